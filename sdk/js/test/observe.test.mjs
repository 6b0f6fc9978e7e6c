// register() and observe(): the resource, the export to {endpoint}/v1/traces with the key (to a
// local HTTP server standing in for ingest), and spans of sync and async functions (read back from
// an in-memory exporter added beside it).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, test } from "node:test";

import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

import { observe, register, updateCurrentGeneration } from "../dist/esm/index.js";
import { evalTagDict, resourceAttributes } from "../dist/esm/tracing_register.js";

const exporter = new InMemorySpanExporter();
// register() exports to ingest; here a second processor keeps the spans in memory as well.
const received = [];
const ingest = createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    received.push({ url: request.url, headers: request.headers, bytes: Buffer.concat(chunks).length });
    response.writeHead(200, { "content-type": "application/x-protobuf" }).end();
  });
});
await new Promise((resolve) => ingest.listen(0, "127.0.0.1", resolve));
after(() => ingest.close());
const provider = register({
  projectName: "unit",
  secretKey: "sk-vane-unit",
  endpoint: `http://127.0.0.1:${ingest.address().port}/`,
  setGlobalTracerProvider: false,
  spanProcessors: [new SimpleSpanProcessor(exporter)],
});
const finished = (name) => exporter.getFinishedSpans().find((s) => s.name === name);

test("register puts the app version on the resource as the Python SDK does, and checks eval tags", () => {
  const tags = [{ evalName: "is_json", mapping: { output: "output.value" } }];
  const attributes = resourceAttributes({ projectName: "bot", projectVersionName: "v1", evalTags: tags, metadata: { team: "s" } });
  assert.deepEqual(attributes, {
    "service.name": "bot",
    project_name: "bot",
    project_type: "experiment",
    project_version_name: "v1",
    eval_tags: JSON.stringify([evalTagDict(tags[0])]),
    metadata: '{"team":"s"}',
  });
  assert.throws(() => register({ projectType: "observe", evalTags: [{ evalName: "x" }] }), /EXPERIMENT/);
  assert.throws(() => register({ evalTags: [{ evalName: "x" }, { evalName: "x" }] }), /share a name/);
  assert.throws(() => register({ projectType: "production" }), /experiment/);
});

test("observe records a sync function's argument and result, and its updates", () => {
  const answer = observe((question) => {
    updateCurrentGeneration({ usage: { inputTokens: 10, outputTokens: 2 }, cost: 0.25 });
    return `re: ${question}`;
  }, { asType: "generation", name: "answer", model: "gpt-4o-mini" });
  assert.equal(answer("why?"), "re: why?");
  const a = finished("answer").attributes;
  assert.deepEqual([a["input.value"], a["output.value"], a["gen_ai.request.model"], a["gen_ai.cost.total"], a["gen_ai.span.kind"]],
    ["why?", "re: why?", "gpt-4o-mini", 0.25, "LLM"]);
});

test("observe waits for an async function, keeps `this`, and takes several arguments as a list", async () => {
  const bot = {
    greeting: "hi",
    async reply(a, b) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      return { answer: `${this.greeting} ${a}${b}` };
    },
  };
  bot.reply = observe(bot.reply, { asType: "generation" });
  assert.deepEqual(await bot.reply("x", 1), { answer: "hi x1" });
  const a = finished("reply").attributes;
  assert.deepEqual([a["input.value"], a["output.value"]], ['["x",1]', '{"answer":"hi x1"}']);
});

test("observe marks a failing function's span and rethrows", async () => {
  const broken = observe(function broken() { throw new Error("no"); });
  assert.throws(() => broken(), /no/);
  assert.equal(finished("broken").status.code, 2);
  assert.equal(finished("broken").attributes["gen_ai.span.kind"], "CHAIN");
});

test("flush sends the spans as OTLP protobuf to /v1/traces with the bearer key", async () => {
  observe(() => "x", { name: "flushed" })();
  await provider.forceFlush();
  assert.ok(received.length >= 1);
  const [first] = received;
  assert.deepEqual(
    [first.url, first.headers["authorization"], first.headers["content-type"]],
    ["/v1/traces", "Bearer sk-vane-unit", "application/x-protobuf"],
  );
  assert.ok(first.bytes > 0);
});
