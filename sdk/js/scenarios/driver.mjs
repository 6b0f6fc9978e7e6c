// A Node process that makes the SDK calls a test sends it, one JSON line per call on stdin, and
// answers each with one JSON line on stdout: tests/integration/test_sdk_js.py drives it, so the
// TypeScript SDK is checked against real registry, ingest and aggregator processes.
import { createInterface } from "node:readline";

import { Vane, observe, register, updateCurrentGeneration } from "vane-sdk";

const clients = new Map(); // name → Vane
const prompts = new Map(); // prompt name → the last Prompt object fetched
const client = (name = "main") => {
  const found = clients.get(name);
  if (!found) throw new Error(`no client ${name}`);
  return found;
};
const described = (p, compileWith) => ({
  name: p.name, version: p.version, type: p.type, labels: [...p.labels], label: p.label, config: p.config,
  variables: [...p.variables], isFallback: p.isFallback, prompt: p.prompt,
  ...(compileWith ? { compiled: p.compile(compileWith) } : {}),
});

const ops = {
  client: ({ name = "main", options = {} }) => {
    clients.set(name, new Vane(options));
    return {};
  },
  register: ({ options }) => {
    register(options);
    return {};
  },
  // `keep` names the prompt for later calls (default: its name)
  get: async ({ client: c, name, options = {}, compile, keep = name }) => {
    const p = await client(c).getPrompt(name, options);
    const same = prompts.get(keep) === p;
    prompts.set(keep, p);
    return { ...described(p, compile), same };
  },
  create: async ({ client: c, name, prompt, options }) => described(await client(c).createPrompt(name, prompt, options)),
  setLabels: async ({ client: c, name, version, labels }) => described(await client(c).setLabels(name, version, labels)),
  setLabelSplit: async ({ client: c, name, label, weights }) => ({ split: await client(c).setLabelSplit(name, label, weights) }),
  // The versions a split label serves: one fetch per sticky key, then `draws` fetches without one.
  draws: async ({ client: c, name, stickyKeys = [], draws = 0 }) => {
    const sticky = [];
    for (const stickyKey of stickyKeys) sticky.push((await client(c).getPrompt(name, { stickyKey })).version);
    const random = new Set();
    for (let i = 0; i < draws; i++) random.add((await client(c).getPrompt(name)).version);
    return { sticky, random: [...random].sort() };
  },
  watching: async ({ client: c }) => ({ watching: await client(c).watching(10_000) }),
  // Poll the cache (no refetch: a long TTL) until the label serves `version`.
  until: async ({ client: c, name, options = {}, version, timeoutMs = 10_000 }) => {
    const start = performance.now();
    while (performance.now() - start < timeoutMs) {
      const p = await client(c).getPrompt(name, options);
      if (p.version === version) return { version, ms: performance.now() - start };
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    return { version: (await client(c).getPrompt(name, options)).version, timedOut: true };
  },
  generation: async ({ client: c, name, model, prompt, input, output, usage, firstToken }) =>
    client(c).startGeneration({ name, model, prompt: prompt ? prompts.get(prompt) : undefined, input }, async (gen) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      if (firstToken) gen.firstToken();
      await new Promise((resolve) => setTimeout(resolve, 5));
      gen.update({ output, usage });
      return { traceId: gen.traceId, spanId: gen.spanId };
    }),
  observed: async ({ name, model, input, output, usage }) => {
    const fn = observe(async (question) => {
      await new Promise((resolve) => setTimeout(resolve, 1));
      updateCurrentGeneration({ usage });
      return `${output} ${question}`;
    }, { asType: "generation", name, model });
    return { output: await fn(input) };
  },
  score: async ({ client: c, options }) => ({ id: await client(c).score(options) }),
  flush: async ({ client: c }) => ({ flushed: await client(c).flush() }),
  close: async () => {
    for (const c of clients.values()) await c.close();
    clients.clear();
    return {};
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  const { op, ...args } = JSON.parse(line);
  let answer;
  try {
    answer = await ops[op](args);
  } catch (error) {
    answer = { error: error.name, message: error.message };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
}
await ops.close();
