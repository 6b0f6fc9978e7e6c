// Runs explorer: stored runs newest first with filters, and one trace's spans with their scores.
import { api, query } from "./api.js";
import { count, el, empty, ms, score, tokens, usd, when } from "./format.js";
import { sortableTable } from "./table.js";

const FILTERS = ["app_version", "prompt_name", "prompt_version", "model", "status"];

export async function runsView(params, go) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) || undefined]));
  const [body, versions] = await Promise.all([
    api(`/api/v1/runs${query({ ...filters, cursor: params.get("cursor"), limit: 50 })}`),
    api("/api/v1/versions/metrics").then((b) => [...new Set(b.versions.map((r) => r.version))].sort()),
  ]);
  const inputs = {
    app_version: el("select", { id: "filter-app_version" }, el("option", { value: "" }, "any"), versions.map((v) => el("option", { value: v, selected: v === filters.app_version }, v))),
    prompt_name: el("input", { id: "filter-prompt_name", value: filters.prompt_name ?? "", size: 14, placeholder: "any" }),
    prompt_version: el("input", { id: "filter-prompt_version", value: filters.prompt_version ?? "", size: 4, type: "number", min: 1, placeholder: "any" }),
    model: el("input", { id: "filter-model", value: filters.model ?? "", size: 12, placeholder: "any" }),
    status: el("select", { id: "filter-status" }, ["", "ok", "error", "unset"].map((s) => el("option", { value: s, selected: s === (filters.status ?? "") }, s || "any"))),
  };
  const apply = () => go("runs", Object.fromEntries(FILTERS.map((f) => [f, inputs[f].value])));
  const controls = el(
    "form",
    { class: "controls", onsubmit: (e) => (e.preventDefault(), apply()) },
    FILTERS.map((f) => el("label", {}, f.replace("_", " "), inputs[f])),
    el("button", { class: "primary", type: "submit", id: "filter-apply" }, "Filter"),
  );
  const out = [el("h1", {}, "Runs"), controls];
  if (!body.runs.length) {
    out.push(empty("No runs match", "Loosen a filter, or send traces (see the Versions page)."));
    return out;
  }
  out.push(
    sortableTable(
      [
        { key: "start_time", title: "started", text: true, value: (r) => r.start_time, render: (r) => el("a", { href: `#/runs/${r.trace_id}` }, when(r.start_time)) },
        { key: "name", title: "span", text: true, value: (r) => r.name },
        { key: "app_version", title: "app version", text: true, value: (r) => r.app_version },
        { key: "prompt", title: "prompt", text: true, value: (r) => r.prompt_name ?? "", render: (r) => promptLink(r) },
        { key: "model", title: "model", text: true, value: (r) => r.model ?? "–" },
        { key: "latency_ms", title: "latency", unit: "ms", value: (r) => r.latency_ms, format: ms },
        { key: "total_tokens", title: "tokens", value: (r) => r.total_tokens, format: tokens },
        { key: "cost", title: "cost", unit: "USD", value: (r) => r.cost, format: usd },
        { key: "status", title: "status", text: true, value: (r) => r.status, render: (r) => el("span", { class: r.status === "error" ? "error" : "" }, r.status) },
      ],
      body.runs,
      { id: "runs", rowKey: (r) => r.span_id },
    ),
  );
  if (body.next_cursor) {
    out.push(el("p", {}, el("button", { type: "button", id: "runs-older", onclick: () => go("runs", { ...filters, cursor: body.next_cursor }) }, "Older runs →")));
  }
  return out;
}

function shown(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function promptLink(r) {
  if (!r.prompt_name) return "–";
  return el("a", { href: `#/prompt/${encodeURIComponent(r.prompt_name)}` }, `${r.prompt_name} v${r.prompt_version}`);
}

function scoreList(scores) {
  if (!scores.length) return el("span", { class: "muted" }, "–");
  return scores.map((s) =>
    el("span", { class: "label", title: `${s.source}${s.comment ? `: ${s.comment}` : ""}` }, `${s.name} ${s.is_error ? "error" : s.value !== null ? score(s.value) : s.string_value ?? "–"}`),
  );
}

export async function traceView(traceId) {
  const body = await api(`/api/v1/runs/${encodeURIComponent(traceId)}`);
  const depth = new Map();
  for (const s of body.spans) depth.set(s.span_id, s.parent_span_id && depth.has(s.parent_span_id) ? depth.get(s.parent_span_id) + 1 : 0);
  return [
    el("h1", {}, "Trace ", el("code", {}, body.trace_id)),
    el("p", {}, el("a", { href: "#/runs" }, "← all runs"), body.scores.length ? [" · trace scores: ", scoreList(body.scores)] : null),
    sortableTable(
      [
        { key: "name", title: "span", text: true, value: (s) => s.start_time, render: (s) => el("span", { style: `padding-left:${depth.get(s.span_id) * 16}px` }, s.name) },
        { key: "kind", title: "kind", text: true, value: (s) => s.kind },
        { key: "prompt", title: "prompt", text: true, value: (s) => s.prompt_name ?? "", render: (s) => promptLink(s) },
        { key: "model", title: "model", text: true, value: (s) => s.model ?? "–" },
        { key: "latency_ms", title: "latency", unit: "ms", value: (s) => s.latency_ms, format: ms },
        { key: "ttft_ms", title: "TTFT", unit: "ms", value: (s) => s.ttft_ms, format: ms },
        { key: "input_tokens", title: "input", value: (s) => s.input_tokens, format: tokens },
        { key: "output_tokens", title: "output", value: (s) => s.output_tokens, format: tokens },
        { key: "cost", title: "cost", unit: "USD", value: (s) => s.cost, format: usd },
        { key: "status", title: "status", text: true, value: (s) => s.status },
        { key: "scores", title: "scores", text: true, value: (s) => s.scores.length, render: (s) => scoreList(s.scores) },
      ],
      body.spans,
      { id: "trace-spans", rowKey: (s) => s.span_id },
    ),
    ...body.spans
      .filter((s) => s.input || s.output)
      .map((s) => el("details", {}, el("summary", {}, `${s.name}: input and output`), el("pre", {}, `input:\n${shown(s.input)}\n\noutput:\n${shown(s.output)}`))),
    el("p", { class: "muted" }, `${count(body.spans.length)} spans, started ${when(body.spans[0]?.start_time)}.`),
  ];
}
