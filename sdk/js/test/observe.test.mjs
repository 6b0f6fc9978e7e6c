// observe() on sync and async functions, through a registered provider whose exporter is in memory.
import assert from "node:assert/strict";
import { test } from "node:test";

import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";

import { observe, register, updateCurrentGeneration } from "../dist/esm/index.js";
import { evalTagDict, resourceAttributes } from "../dist/esm/tracing_register.js";

const exporter = new InMemorySpanExporter();
// register() exports to ingest; here a second processor keeps the spans in memory as well.
register({
  projectName: "unit",
  endpoint: "http://127.0.0.1:9",
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
