// Cached getPrompt latency: one fetch from the registry (VANE_REGISTRY, VANE_SECRET_KEY), then
// timed calls served from the cache; then, for each "move N" line on stdin (sent just before the
// benchmark moves the label), polls the cache until it serves version N. One JSON line per figure.
import { createInterface } from "node:readline";

import { Vane } from "vane-sdk";

const calls = Number(process.argv[2] ?? 10_000);
const vane = new Vane();
const options = { label: "production", cacheTtlSeconds: 3600 };
const percentile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

await vane.getPrompt("bench", options);
for (let i = 0; i < calls; i++) await vane.getPrompt("bench", options); // warm the JIT

// Each call timed alone (the clock read adds its own ~30-60 ns to every figure).
const each = new Float64Array(calls);
for (let i = 0; i < calls; i++) {
  const start = process.hrtime.bigint();
  await vane.getPrompt("bench", options);
  each[i] = Number(process.hrtime.bigint() - start) / 1000;
}
each.sort();
// Batches of 1,000 calls, for a mean without the clock's share.
const batch = 1_000;
const means = [];
for (let b = 0; b < Math.max(10, calls / batch); b++) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < batch; i++) await vane.getPrompt("bench", options);
  means.push(Number(process.hrtime.bigint() - start) / 1000 / batch);
}
means.sort((a, b) => a - b);
const print = (figure) => process.stdout.write(`${JSON.stringify(figure)}\n`);
print({ figure: "cached_get_us", calls, p50: percentile(each, 0.5), p99: percentile(each, 0.99), max: each[calls - 1], batch_mean_median: percentile(means, 0.5) });

// Label moves: the benchmark moves the label and says which version to wait for.
await vane.watching(10_000);
print({ figure: "watching" });
for await (const line of createInterface({ input: process.stdin })) {
  const version = Number(line.trim().split(" ")[1]);
  const start = performance.now();
  while ((await vane.getPrompt("bench", options)).version !== version) {
    if (performance.now() - start > 10_000) break;
    await new Promise((resolve) => setImmediate(resolve)); // let the watch stream's events in
  }
  print({ figure: "moved", version, ms: performance.now() - start });
}
await vane.close();
