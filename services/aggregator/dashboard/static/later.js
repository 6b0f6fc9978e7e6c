// Experiments (aggregator) and alerts (alert service): read as CONTRACT describes them; a server
// that does not serve them yet answers 404, which reads as an empty state that says so.
import { api, ApiError } from "./api.js";
import { count, el, empty, pct, pValue, when } from "./format.js";
import { sortableTable } from "./table.js";

/** The list under `key` (or the body itself when it is a list); null when the endpoint is absent. */
async function listOrAbsent(path, key) {
  try {
    const body = await api(path);
    return Array.isArray(body) ? body : (body?.[key] ?? []);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405 || error.status === 502)) return null;
    throw error;
  }
}

export async function experimentsView() {
  const experiments = await listOrAbsent("/api/v1/experiments", "experiments");
  const title = el("h1", {}, "Experiments");
  if (experiments === null) {
    return [title, empty("Experiments are not served here yet", "This Vane answers 404 at /api/v1/experiments: its aggregator predates experiments. Upgrade Vane to run A/B tests on a label that splits traffic.")];
  }
  if (!experiments.length) {
    return [
      title,
      empty(
        "No experiments yet",
        "Split a label's traffic between two versions (PUT /api/v1/prompts/{name}/labels/{label} with a split), then start an experiment on it:",
        el("pre", {}, 'POST /api/v1/experiments\n{"name": "concise-vs-long", "prompt": "support-reply", "label": "production",\n "primary_metric": "score:helpfulness", "guardrails": ["latency_ms", "cost"], "min_samples_per_arm": 200}'),
      ),
    ];
  }
  return [title, ...experiments.map(experimentCard)];
}

function experimentCard(x) {
  const arms = sortableTable(
    [
      { key: "version", title: "version", value: (a) => a.version },
      { key: "weight", title: "declared weight", value: (a) => a.weight },
      { key: "observed_share", title: "observed share", unit: "%", value: (a) => a.observed_share, format: pct },
      { key: "n", title: "runs", value: (a) => a.n, format: count },
      { key: "probability_best", title: "P(best)", unit: "%", value: (a) => x.primary?.probability_best?.[a.version] ?? null, format: pct },
    ],
    x.arms || [],
  );
  const srm = x.srm ? `sample ratio p = ${pValue(x.srm.p_value)}${x.srm.mismatch ? " (mismatch!)" : ""}` : "";
  return el(
    "section",
    { class: "experiment" },
    el("h2", {}, `${x.name} `, el("span", { class: "badge" }, x.status)),
    el("p", { class: "muted" }, `${x.prompt} · label ${x.label} · started ${when(x.started_at)} · primary ${x.primary?.metric ?? "–"} · ${srm}`),
    arms,
    x.primary?.verdict ? el("p", {}, `Verdict: ${x.primary.verdict}`) : null,
  );
}

export async function alertsView() {
  const [rules, events] = await Promise.all([listOrAbsent("/api/v1/alerts/rules", "rules"), listOrAbsent("/api/v1/alerts/events", "events")]);
  const title = el("h1", {}, "Alerts");
  if (rules === null) {
    return [title, empty("Alerts are not served here yet", "This Vane answers 404 at /api/v1/alerts/rules: its alert service predates alert rules. Upgrade Vane to be told when a version regresses.")];
  }
  const out = [title, el("h2", {}, "Rules")];
  if (!rules.length) {
    out.push(
      empty(
        "No alert rules yet",
        "Create one to hear when a version gets worse, for example:",
        el("pre", {}, 'POST /api/v1/alerts/rules\n{"name": "slow replies", "scope": {"prompt": "support-reply", "label": "production"},\n "metric": "latency_ms", "statistic": "p95", "condition": {"op": "above", "threshold": 2000},\n "window": "10m", "for": "5m", "min_samples": 50, "severity": "warning",\n "channels": [{"type": "webhook", "url": "https://example.com/hook", "secret": "…"}]}'),
      ),
    );
  } else {
    out.push(
      sortableTable(
        [
          { key: "name", title: "rule", text: true, value: (r) => r.name },
          { key: "metric", title: "metric", text: true, value: (r) => `${r.statistic} ${r.metric}` },
          { key: "condition", title: "condition", text: true, value: (r) => JSON.stringify(r.condition) },
          { key: "severity", title: "severity", text: true, value: (r) => r.severity },
          { key: "state", title: "state", text: true, value: (r) => r.state ?? "–" },
        ],
        rules,
        { id: "alert-rules" },
      ),
    );
  }
  out.push(el("h2", {}, "Firing and history"));
  out.push(
    events && events.length
      ? sortableTable(
          [
            { key: "at", title: "when", text: true, value: (e) => e.at ?? e.started_at, format: when },
            { key: "rule", title: "rule", text: true, value: (e) => e.rule_name ?? e.rule ?? "" },
            { key: "state", title: "state", text: true, value: (e) => e.state },
            { key: "value", title: "value", value: (e) => e.value ?? null },
          ],
          events,
          { id: "alert-events" },
        )
      : el("p", { class: "muted" }, "Nothing has fired."),
  );
  return out;
}
