// Versions overview (app versions side by side, with sparklines), the prompts list, and one prompt:
// its versions, labels, label history, diff, promote and roll back.
import { api, ApiError, query } from "./api.js";
import { metricColumns } from "./columns.js";
import { count, el, empty, when } from "./format.js";
import { sortableTable, sparkline } from "./table.js";

const RANGES = { "24h": 1, "7d": 7, "30d": 30, all: null };

export function rangeParams(params) {
  const days = RANGES[params.get("range") || "all"];
  return days ? { from: new Date(Date.now() - days * 86400e3).toISOString() } : {};
}

export function rangePicker(params, onChange) {
  const select = el(
    "select",
    { id: "range", onchange: (e) => onChange(e.target.value) },
    Object.keys(RANGES).map((r) => el("option", { value: r, selected: (params.get("range") || "all") === r }, r === "all" ? "all time" : `last ${r}`)),
  );
  return el("label", {}, "range", select);
}

function volumeBy(series) {
  const out = new Map();
  for (const s of series) out.set(`${s.project_name ?? ""}|${s.version}`, s.points.map((p) => p.generation_count ?? 0));
  return out;
}

export async function versionsView(params, go) {
  const range = rangeParams(params);
  const [metrics, series] = await Promise.all([
    api(`/api/v1/versions/metrics${query(range)}`),
    // sparklines: a day a point is enough, and cheaper to answer than the finest interval
    api(`/api/v1/versions/timeseries${query({ ...range, metrics: "generation_count", interval: range.from ? "hour" : "day" })}`),
  ]);
  const rows = metrics.versions;
  const apps = [...new Set(rows.map((r) => r.project_name))].sort();
  const controls = el("div", { class: "controls" }, rangePicker(params, (range) => go("", { range })));
  if (!rows.length) {
    return [
      el("h1", {}, "App versions"),
      controls,
      empty(
        "No runs yet",
        "Send traces from your app: point its OpenTelemetry exporter at this address's /v1/traces, with resource attributes project_name and project_version_name (vane.register(project_name=…, project_version_name=…) does it).",
        el("p", {}, "Or start Vane with ", el("code", {}, "vane up --demo"), " to see it with a demo workload."),
      ),
    ];
  }
  const volumes = volumeBy(series.series);
  const sections = apps.map((app) => {
    const own = rows.filter((r) => r.project_name === app);
    const columns = [
      { key: "version", title: "app version", text: true, value: (r) => r.version },
      {
        key: "volume",
        title: "volume",
        text: true,
        value: () => null,
        render: (r) => sparkline(volumes.get(`${r.project_name}|${r.version}`) || []),
      },
      ...metricColumns(own, { runs: true }),
    ];
    return el(
      "section",
      { dataset: { app } },
      el("h2", {}, `App ${app}`, el("span", { class: "muted" }, ` · ${own.length} versions`)),
      sortableTable(columns, own, { id: `versions-${app}`, rowKey: (r) => r.version }),
      el(
        "p",
        {},
        el("a", { href: `#/compare${query({ kind: "app", project_name: app })}` }, "Compare two versions"),
        " · ",
        el("a", { href: `#/winner${query({ kind: "app", project_name: app })}` }, "Choose a winner"),
        " · ",
        el("a", { href: `#/timeseries${query({ kind: "app", project_name: app })}` }, "Time series"),
      ),
    );
  });
  return [
    el("h1", {}, "App versions"),
    controls,
    el("p", { class: "muted" }, "Medians and percentiles per generation; runs are traces. Click a column to sort."),
    ...sections,
  ];
}

export async function promptsView() {
  let body;
  try {
    body = await api("/api/v1/prompts");
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
      return [
        el("h1", {}, "Prompts"),
        empty("The prompt list comes from the registry", "Open this page through the gateway (vane up prints its address, http://127.0.0.1:8000 by default) to see the registry's prompts."),
      ];
    }
    throw error;
  }
  if (!body.prompts.length) {
    return [
      el("h1", {}, "Prompts"),
      empty("No prompts yet", el("p", {}, "Push one: ", el("code", {}, "vane prompts push reply.yaml"), " or POST /api/v1/prompts.")),
    ];
  }
  const columns = [
    { key: "name", title: "prompt", text: true, value: (p) => p.name, render: (p) => el("a", { href: `#/prompt/${encodeURIComponent(p.name)}` }, p.name) },
    { key: "type", title: "type", text: true, value: (p) => p.type },
    { key: "latest_version", title: "latest version", value: (p) => p.latest_version },
    { key: "versions", title: "versions", value: (p) => p.versions.length, format: count },
    { key: "labels", title: "labels", text: true, value: (p) => p.labels.join(","), render: (p) => labelList(p.versions) },
  ];
  return [el("h1", {}, "Prompts"), sortableTable(columns, body.prompts, { id: "prompts", rowKey: (p) => p.name })];
}

function labelList(versions) {
  return versions.filter((v) => v.labels.length).map((v) => el("span", {}, v.labels.map((l) => el("span", { class: "label" }, `${l} → v${v.version}`))));
}

export async function promptView(name, params, go) {
  const range = rangeParams(params);
  const enc = encodeURIComponent(name);
  const [metrics, registry, history] = await Promise.all([
    api(`/api/v1/prompts/${enc}/metrics${query(range)}`),
    api(`/api/v1/prompts/${enc}/versions`).catch(() => ({ versions: [] })),
    api(`/api/v1/prompts/${enc}/label-history`).catch(() => ({ history: [] })),
  ]);
  const byVersion = new Map(registry.versions.map((v) => [v.version, v]));
  const rows = metrics.versions.map((r) => ({ ...r, registry: byVersion.get(r.version) }));
  for (const v of registry.versions) if (!rows.some((r) => r.version === v.version)) rows.push({ version: v.version, labels: v.labels, scores: {}, registry: v });
  const columns = [
    { key: "version", title: "version", value: (r) => r.version },
    { key: "labels", title: "labels", text: true, value: (r) => (r.registry?.labels ?? r.labels ?? []).join(","), render: (r) => (r.registry?.labels ?? r.labels ?? []).map((l) => el("span", { class: "label" }, l)) },
    { key: "commit_message", title: "commit", text: true, value: (r) => r.registry?.commit_message ?? "" },
    ...metricColumns(rows),
  ];
  const versions = registry.versions.map((v) => v.version).sort((a, b) => a - b);
  return [
    el("h1", {}, `Prompt ${name}`),
    el("div", { class: "controls" }, rangePicker(params, (r) => go(`prompt/${enc}`, { range: r }))),
    rows.length ? sortableTable(columns, rows, { id: "prompt-versions", rowKey: (r) => String(r.version) }) : empty("No versions", "This prompt has no versions yet."),
    el(
      "p",
      {},
      el("a", { href: `#/timeseries${query({ kind: "prompt", name })}` }, "Time series"),
      " · ",
      el("a", { href: `#/compare${query({ kind: "prompt", name })}` }, "Compare two versions"),
      " · ",
      el("a", { href: `#/winner${query({ kind: "prompt", name })}` }, "Choose a winner"),
    ),
    versions.length ? promoteForm(name, versions, () => go(`prompt/${enc}`, Object.fromEntries(params))) : null,
    el("h2", {}, "Label history"),
    history.history.length
      ? sortableTable(
          [
            { key: "moved_at", title: "when", text: true, value: (h) => h.moved_at, format: when },
            { key: "label", title: "label", text: true, value: (h) => h.label },
            { key: "from_version", title: "from", value: (h) => h.from_version, format: (v) => v ?? "–" },
            { key: "to_version", title: "to", value: (h) => h.to_version, format: (v) => v ?? "–" },
            { key: "moved_by", title: "by key", text: true, value: (h) => h.moved_by ?? "" },
          ],
          [...history.history].reverse(),
          { id: "label-history" },
        )
      : el("p", { class: "muted" }, "No label has moved yet."),
    versions.length > 1 ? diffPanel(name, versions) : null,
  ];
}

function promoteForm(name, versions, done) {
  const enc = encodeURIComponent(name);
  const version = el("select", { id: "promote-version" }, versions.map((v) => el("option", { value: v, selected: v === versions.at(-1) }, `v${v}`)));
  const label = el("input", { id: "promote-label", value: "production", size: 14 });
  const status = el("span", { class: "muted", id: "promote-status" });
  const act = async (fn) => {
    status.textContent = "…";
    try {
      status.textContent = await fn();
      setTimeout(done, 600);
    } catch (error) {
      status.textContent = error.message;
      status.className = "error";
    }
  };
  return el(
    "div",
    {},
    el("h2", {}, "Labels"),
    el(
      "div",
      { class: "controls" },
      el("label", {}, "version", version),
      el("label", {}, "label", label),
      el(
        "button",
        {
          class: "primary",
          id: "promote",
          type: "button",
          onclick: () =>
            act(async () => {
              await api(`/api/v1/prompts/${enc}/versions/${version.value}`, { method: "PATCH", body: { labels: [label.value] } });
              return `${label.value} now on v${version.value}`;
            }),
        },
        "Promote",
      ),
      el(
        "button",
        {
          id: "rollback",
          type: "button",
          onclick: () =>
            act(async () => {
              const moved = await api(`/api/v1/prompts/${enc}/labels/${encodeURIComponent(label.value)}/rollback`, { method: "POST" });
              return `${label.value} rolled back to v${moved.to.map((s) => s.version).join(", ")}`;
            }),
        },
        "Roll back",
      ),
      status,
    ),
  );
}

function diffPanel(name, versions) {
  const from = el("select", { id: "diff-from" }, versions.map((v, i) => el("option", { value: v, selected: i === versions.length - 2 }, `v${v}`)));
  const to = el("select", { id: "diff-to" }, versions.map((v, i) => el("option", { value: v, selected: i === versions.length - 1 }, `v${v}`)));
  const out = el("div", { class: "diff", id: "diff" });
  const show = async () => {
    const d = await api(`/api/v1/prompts/${encodeURIComponent(name)}/diff${query({ from: from.value, to: to.value })}`);
    const lines = [...d.prompt, ...d.config];
    out.replaceChildren(
      lines.length
        ? el("pre", {}, lines.map((l) => el("div", { class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : l.startsWith("@@") ? "hunk" : "" }, l)))
        : el("p", { class: "muted" }, "The two versions are the same."),
    );
  };
  from.onchange = show;
  to.onchange = show;
  show();
  return el("div", {}, el("h2", {}, "Diff"), el("div", { class: "controls" }, el("label", {}, "from", from), el("label", {}, "to", to)), out);
}
