// Deciding: time series across deployments, compare A vs B, choose a winner with weights.
import { api, ApiError, query } from "./api.js";
import { decidingMetrics, scoreNames } from "./columns.js";
import { markerText, timeSeriesChart } from "./chart.js";
import { count, el, empty, metricValue, pValue, pct, score, when } from "./format.js";
import { rangeParams, rangePicker } from "./versions.js";
import { sortableTable } from "./table.js";

const SERIES_FIELDS = [
  ["median_latency_ms", "latency p50 (ms)"],
  ["p95_latency_ms", "latency p95 (ms)"],
  ["p99_latency_ms", "latency p99 (ms)"],
  ["median_ttft_ms", "time to first token p50 (ms)"],
  ["generation_count", "generations (count)"],
  ["error_rate", "error rate (%)"],
  ["median_cost", "cost p50 (USD)"],
  ["total_cost", "cost total (USD)"],
  ["median_input_tokens", "input tokens p50"],
  ["median_output_tokens", "output tokens p50"],
];

const VERDICTS = {
  b_better: "B better",
  b_worse: "B worse",
  no_difference: "no difference",
  not_enough_data: "not enough data",
  different: "different",
};

/** What to decide about: kind (app or prompt), the prompt's name or the app, and its versions' rows. */
async function subject(params, range) {
  const kind = params.get("kind") || "app";
  if (kind === "prompt") {
    const name = params.get("name");
    let prompts = [];
    try {
      prompts = (await api("/api/v1/prompts")).prompts.map((p) => p.name);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
    }
    if (!name) return { kind, name: prompts[0] ?? null, prompts, rows: [] , needsName: true };
    const rows = (await api(`/api/v1/prompts/${encodeURIComponent(name)}/metrics${query(range)}`)).versions;
    return { kind, name, prompts, rows };
  }
  const all = (await api(`/api/v1/versions/metrics${query(range)}`)).versions;
  const apps = [...new Set(all.map((r) => r.project_name))].sort();
  const app = params.get("project_name") || apps[0] || null;
  return { kind, app, apps, rows: all.filter((r) => r.project_name === app) };
}

function subjectControls(s, params, go, view) {
  const set = (changes) => go(view, { ...Object.fromEntries(params), ...changes });
  const kind = el(
    "select",
    { id: "kind", onchange: (e) => go(view, { kind: e.target.value, range: params.get("range") }) },
    el("option", { value: "app", selected: s.kind === "app" }, "app versions"),
    el("option", { value: "prompt", selected: s.kind === "prompt" }, "prompt versions"),
  );
  const which =
    s.kind === "prompt"
      ? s.prompts.length
        ? el("select", { id: "prompt-name", onchange: (e) => set({ name: e.target.value, a: "", b: "" }) }, s.prompts.map((n) => el("option", { value: n, selected: n === s.name }, n)))
        : el("input", { id: "prompt-name", value: s.name ?? "", placeholder: "prompt name", onchange: (e) => set({ name: e.target.value }) })
      : el("select", { id: "app", onchange: (e) => set({ project_name: e.target.value, a: "", b: "" }) }, s.apps.map((n) => el("option", { value: n, selected: n === s.app }, n)));
  return [el("label", {}, "compare", kind), el("label", {}, s.kind === "prompt" ? "prompt" : "app", which), rangePicker(params, (range) => set({ range }))];
}

function scopeParams(s) {
  return s.kind === "prompt" ? { kind: "prompt", name: s.name } : { kind: "app", project_name: s.app };
}

function needsSubject(s, params, go, view, title) {
  if (s.kind === "prompt" && s.needsName && s.name) {
    go(view, { ...Object.fromEntries(params), name: s.name });
    return [];
  }
  if (!s.rows.length) {
    return [
      el("h1", {}, title),
      el("div", { class: "controls" }, subjectControls(s, params, go, view)),
      empty("No versions with runs in this range", "Pick another range or app, or send traces tagged with their version (see the Versions page)."),
    ];
  }
  return null;
}

function seriesOf(kind, name, app, field, range) {
  const path = kind === "prompt" ? `/api/v1/prompts/${encodeURIComponent(name)}/timeseries` : "/api/v1/versions/timeseries";
  // only the figure drawn: a point holds every ROW field otherwise
  const metrics = field.startsWith("score:") ? "scores" : field;
  return api(`${path}${query({ ...range, metrics, project_name: kind === "app" ? app : undefined })}`);
}

export async function timeseriesView(params, go) {
  const range = rangeParams(params);
  const field = params.get("field") || "median_latency_ms";
  const kind = params.get("kind") || "app";
  // what the URL names is asked for beside the versions' rows, not after them
  const early = kind === "prompt" && params.get("name") ? seriesOf(kind, params.get("name"), null, field, range) : null;
  early?.catch(() => {});
  const s = await subject(params, range);
  const missing = needsSubject(s, params, go, "timeseries", "Time series");
  if (missing) return missing;
  const body = await (early ?? seriesOf(s.kind, s.name, s.app, field, range));
  const hidden = new Set((params.get("hide") || "").split(",").filter(Boolean));
  const series = body.series.filter((x) => (s.kind === "prompt" || x.project_name === s.app) && !hidden.has(String(x.version)));
  const markers = body.markers.filter((m) => s.kind === "prompt" || !m.project_name || m.project_name === s.app);
  const fields = [...SERIES_FIELDS, ...scoreNames(s.rows).map((n) => [`score:${n}`, `${n} (median)`])];
  const set = (changes) => go("timeseries", { ...Object.fromEntries(params), ...changes });
  const picker = el(
    "div",
    { class: "controls", id: "version-picker" },
    body.series
      .filter((x) => s.kind === "prompt" || x.project_name === s.app)
      .map((x) => {
        const v = String(x.version);
        const box = el("input", {
          type: "checkbox",
          checked: !hidden.has(v),
          onchange: (e) => {
            const next = new Set(hidden);
            if (e.target.checked) next.delete(v);
            else next.add(v);
            set({ hide: [...next].join(",") });
          },
        });
        return el("label", { class: "check" }, `version ${v}`, box);
      }),
  );
  return [
    el("h1", {}, "Time series"),
    el(
      "div",
      { class: "controls" },
      subjectControls(s, params, go, "timeseries"),
      el("label", {}, "metric", el("select", { id: "field", onchange: (e) => set({ field: e.target.value }) }, fields.map(([k, t]) => el("option", { value: k, selected: k === field }, t)))),
    ),
    picker,
    el("p", { class: "muted" }, `One point per ${body.interval}; dashed lines are deployments (label moves, or an app version's first run).`),
    series.length ? timeSeriesChart(series, markers, field, { width: Math.min(1400, window.innerWidth - 60) }) : empty("No version picked", "Tick a version above."),
    el("h2", {}, "Deployments"),
    markers.length
      ? sortableTable(
          [
            { key: "at", title: "when", text: true, value: (m) => m.at, format: when },
            { key: "move", title: "what", text: true, value: (m) => markerText(m) },
          ],
          markers,
          { id: "markers" },
        )
      : el("p", { class: "muted" }, "No deployment in this range."),
  ];
}

function versionSelect(id, rows, selected) {
  return el("select", { id }, rows.map((r) => el("option", { value: r.version, selected: String(r.version) === String(selected) }, `${r.version} (${count(r.generation_count)} gen.)`)));
}

export async function compareView(params, go) {
  const range = rangeParams(params);
  const s = await subject(params, range);
  const early = needsSubject(s, params, go, "compare", "Compare");
  if (early) return early;
  const versions = s.rows.map((r) => String(r.version));
  const a = params.get("a") || versions[0];
  const b = params.get("b") || versions[1] || versions[0];
  const selectA = versionSelect("compare-a", s.rows, a);
  const selectB = versionSelect("compare-b", s.rows, b);
  const run = () => go("compare", { ...Object.fromEntries(params), a: selectA.value, b: selectB.value });
  const out = [
    el("h1", {}, "Compare A with B"),
    el(
      "div",
      { class: "controls" },
      subjectControls(s, params, go, "compare"),
      el("label", {}, "A (baseline)", selectA),
      el("label", {}, "B", selectB),
      el("button", { class: "primary", id: "compare-run", type: "button", onclick: run }, "Compare"),
    ),
  ];
  if (!params.get("a") || a === b) {
    out.push(el("p", { class: "muted" }, a === b ? "Pick two different versions." : "Pick A and B, then Compare."));
    return out;
  }
  const body = await api(`/api/v1/compare${query({ ...scopeParams(s), a, b, ...range })}`);
  out.push(
    el("p", {}, `A = version ${body.a.version} (${count(body.a.n)} generations), B = version ${body.b.version} (${count(body.b.n)} generations). `,
      el("span", { class: "muted" }, `Verdicts are Holm-corrected across the metrics at α = ${body.alpha}.`)),
    sortableTable(
      [
        { key: "metric", title: "metric", text: true, value: (c) => c.metric },
        { key: "statistic", title: "statistic", text: true, value: (c) => c.statistic },
        { key: "better", title: "better", text: true, value: (c) => c.better },
        { key: "a", title: "A", value: (c) => c.a.estimate, format: (v, c) => `${estimate(c, v)} (n ${count(c.a.n)})` },
        { key: "b", title: "B", value: (c) => c.b.estimate, format: (v, c) => `${estimate(c, v)} (n ${count(c.b.n)})` },
        { key: "difference", title: "B − A", value: (c) => c.difference, format: (v, c) => estimate(c, v) },
        { key: "relative_difference", title: "relative", unit: "%", value: (c) => c.relative_difference, format: pct },
        { key: "ci95", title: "95% interval", text: true, value: (c) => (c.ci95 ? c.ci95[0] : null), format: (v, c) => (c.ci95 ? `[${estimate(c, c.ci95[0])}, ${estimate(c, c.ci95[1])}]` : "–") },
        { key: "p_value", title: "p-value", value: (c) => c.p_value, format: pValue },
        { key: "test", title: "test", text: true, value: (c) => c.test ?? "–" },
        { key: "verdict", title: "verdict", text: true, value: (c) => c.verdict, render: (c) => el("span", { class: `badge verdict-${c.verdict}`, dataset: { verdict: c.verdict } }, VERDICTS[c.verdict] ?? c.verdict) },
        { key: "samples_needed", title: "samples needed", unit: "per arm", value: (c) => c.samples_needed, format: count },
      ],
      body.metrics,
      { id: "comparison", rowKey: (c) => `${c.metric}|${c.statistic}` },
    ),
  );
  return out;
}

function estimate(c, v) {
  if (c.statistic === "rate") return pct(v);
  if (c.statistic === "distribution") return score(v);
  return metricValue(c.metric, v);
}

const DEFAULT_WEIGHT = (metric) => (metric.startsWith("score:") || metric === "latency_ms" || metric === "cost" ? 1 : 0);

export async function winnerView(params, go) {
  const range = rangeParams(params);
  const s = await subject(params, range);
  const early = needsSubject(s, params, go, "winner", "Choose winner");
  if (early) return early;
  const metrics = decidingMetrics(s.rows);
  const weights = Object.fromEntries(metrics.map((m) => [m, DEFAULT_WEIGHT(m)]));
  const result = el("div", { id: "winner-result" });
  let timer = null;
  let asked = 0;
  const rank = async () => {
    const ask = ++asked;
    const body = { ...scopeParams(s), weights: Object.fromEntries(Object.entries(weights).filter(([, w]) => w > 0)) };
    if (range.from) body.from = range.from;
    if (!Object.keys(body.weights).length) {
      result.replaceChildren(el("p", { class: "muted" }, "Give at least one metric a weight."));
      return;
    }
    try {
      const answer = await api("/api/v1/winner", { method: "POST", body });
      if (ask === asked) {
        result.replaceChildren(...ranking(answer, Object.keys(body.weights)));
        performance.mark("vane:ranking");
      }
    } catch (error) {
      if (ask === asked) result.replaceChildren(el("p", { class: "error" }, error.message));
    }
  };
  const sliders = metrics.map((m) => {
    const shown = el("span", { class: "muted", id: `weight-value-${m}` }, String(weights[m]));
    const slider = el("input", {
      type: "range",
      min: 0,
      max: 10,
      step: 1,
      value: weights[m],
      id: `weight-${m}`,
      dataset: { metric: m },
      oninput: (e) => {
        weights[m] = Number(e.target.value);
        shown.textContent = e.target.value;
        clearTimeout(timer);
        timer = setTimeout(rank, 120);
      },
    });
    return [el("label", { for: `weight-${m}` }, m), slider, shown];
  });
  rank();
  return [
    el("h1", {}, "Choose winner"),
    el("div", { class: "controls" }, subjectControls(s, params, go, "winner")),
    el("p", { class: "muted" }, "Each metric is normalised across the versions with its direction (better → 1); weights are normalised to sum 1. Move a slider to re-rank."),
    el("div", { class: "weights", id: "weights" }, sliders.flat()),
    result,
  ];
}

function ranking(answer, weighted) {
  const banner = answer.clear
    ? el("p", { class: "winner", id: "winner" }, "Winner: ", el("strong", {}, `version ${answer.winner}`), el("span", { class: "muted" }, ` · ${answer.reason}`))
    : el("p", { class: "winner", id: "winner" }, el("strong", {}, "No clear winner"), el("span", { class: "muted" }, ` · ${answer.reason}`));
  const columns = [
    { key: "rank", title: "rank", value: (r) => r.rank },
    { key: "version", title: "version", text: true, value: (r) => String(r.version) },
    { key: "score", title: "weighted score", unit: "0–1", value: (r) => r.score, format: (v) => v.toFixed(3) },
    ...weighted.map((m) => ({ key: m, title: m, value: (r) => r.metrics[m] ?? null, format: (v, r) => `${metricValue(m, v)} (+${(r.contributions[m] ?? 0).toFixed(3)})` })),
  ];
  return [banner, sortableTable(columns, answer.ranking, { id: "ranking", rowKey: (r) => String(r.version) })];
}
