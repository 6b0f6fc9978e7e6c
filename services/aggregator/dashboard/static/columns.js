// The metrics table's columns: one ROW of the query API per version (CONTRACT "Aggregator query API").
import { count, ms, pct, score, tokens, usd, when } from "./format.js";

/** Score names present in any row, sorted. */
export function scoreNames(rows) {
  return [...new Set(rows.flatMap((r) => Object.keys(r.scores || {})))].sort();
}

export function metricColumns(rows, { runs = false } = {}) {
  const scoreColumns = scoreNames(rows).map((name) => ({
    key: `score:${name}`,
    title: name,
    unit: "median",
    value: (r) => r.scores?.[name]?.median ?? null,
    format: (v, r) => (v === null ? "–" : `${score(v)} (n ${count(r.scores[name].count)})`),
  }));
  const runColumns = runs
    ? [
        { key: "run_count", title: "runs", value: (r) => r.run_count, format: count },
        { key: "mean_run_latency_ms", title: "run latency", unit: "mean", value: (r) => r.mean_run_latency_ms, format: ms },
        { key: "mean_run_cost", title: "run cost", unit: "mean", value: (r) => r.mean_run_cost, format: usd },
      ]
    : [];
  return [
    { key: "generation_count", title: "generations", value: (r) => r.generation_count, format: count },
    ...runColumns,
    ...scoreColumns,
    { key: "median_latency_ms", title: "latency p50", unit: "ms", value: (r) => r.median_latency_ms, format: ms },
    { key: "p95_latency_ms", title: "p95", unit: "ms", value: (r) => r.p95_latency_ms, format: ms },
    { key: "p99_latency_ms", title: "p99", unit: "ms", value: (r) => r.p99_latency_ms, format: ms },
    { key: "median_ttft_ms", title: "TTFT p50", unit: "ms", value: (r) => r.median_ttft_ms, format: ms },
    { key: "median_input_tokens", title: "input p50", unit: "tokens", value: (r) => r.median_input_tokens, format: tokens },
    { key: "median_output_tokens", title: "output p50", unit: "tokens", value: (r) => r.median_output_tokens, format: tokens },
    { key: "total_tokens", title: "tokens", unit: "total", value: (r) => r.total_tokens, format: tokens },
    { key: "mean_cost", title: "cost", unit: "mean, USD", value: (r) => r.mean_cost, format: usd },
    { key: "total_cost", title: "cost", unit: "total, USD", value: (r) => r.total_cost, format: usd },
    { key: "error_rate", title: "errors", unit: "%", value: (r) => r.error_rate, format: pct },
    { key: "first_generation_at", title: "first use", value: (r) => r.first_generation_at, format: when },
    { key: "last_generation_at", title: "last use", value: (r) => r.last_generation_at, format: when },
  ];
}

/** The METRICs compare and winner take (CONTRACT "Deciding"), for these rows. */
export function decidingMetrics(rows, { runs = false } = {}) {
  const base = ["latency_ms", "ttft_ms", "input_tokens", "output_tokens", "total_tokens", "cost", "error_rate"];
  const run = runs ? ["run_latency_ms", "run_cost", "run_error_rate"] : [];
  return [...scoreNames(rows).map((n) => `score:${n}`), ...base, ...run];
}
