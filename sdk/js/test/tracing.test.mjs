// Generations as spans, read back from OpenTelemetry's in-memory exporter: the attributes the
// Python SDK sets (prompt link, usage, cost, time to first token), observe on sync and async
// functions, errors, and nesting across awaits.
import assert from "node:assert/strict";
import { test } from "node:test";

import { context } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

import { Prompt, currentGeneration, updateCurrentGeneration } from "../dist/esm/index.js";
import { evalTagDict } from "../dist/esm/tracing_register.js";
import { promptAttributes, withGeneration } from "../dist/esm/tracing_generation.js";

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer("test");
const finished = (name) => exporter.getFinishedSpans().find((s) => s.name === name);

const served = new Prompt({ name: "support-reply", version: 3, type: "text", prompt: "Hi {{name}}", labels: ["latest", "production"], label: "production" });

test("a served prompt links its name, version and the label it was fetched by; a fallback or none links nothing", () => {
  assert.deepEqual(promptAttributes(served), {
    "gen_ai.prompt.template.name": "support-reply",
    "gen_ai.prompt.template.version": 3,
    "gen_ai.prompt.template.label": "production",
  });
  assert.deepEqual(promptAttributes(Prompt.fallback("support-reply", "Hi")), {});
  assert.deepEqual(promptAttributes(undefined), {});
});

test("a generation carries model, input, output, usage, cost, ttft and the prompt version", async () => {
  const input = [{ role: "user", content: "Hi" }];
  const result = await withGeneration(tracer, { name: "reply", model: "gpt-4o", prompt: served, input, sessionId: "s1", userId: "u1", modelParameters: { temperature: 0 } }, async (gen) => {
    await new Promise((resolve) => setTimeout(resolve, 5));
    gen.firstToken();
    gen.firstToken(); // only the first counts
    gen.update({ output: "Hello!", usage: { inputTokens: 812, outputTokens: 96, totalTokens: 908, unknown: 1 }, cost: 0.0125, metadata: { team: "support" } });
    return gen.traceId;
  });
  const span = finished("reply");
  assert.equal(result, span.spanContext().traceId);
  const a = span.attributes;
  assert.deepEqual(
    [a["gen_ai.span.kind"], a["gen_ai.operation.name"], a["gen_ai.request.model"], a["input.value"], a["output.value"]],
    ["LLM", "chat", "gpt-4o", JSON.stringify(input), "Hello!"],
  );
  assert.deepEqual(
    [a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], a["gen_ai.usage.total_tokens"], a["gen_ai.cost.total"]],
    [812, 96, 908, 0.0125],
  );
  assert.equal(a["gen_ai.prompt.template.version"], 3);
  assert.ok(a["gen_ai.server.time_to_first_token"] >= 4, `ttft ${a["gen_ai.server.time_to_first_token"]}`);
  assert.deepEqual([a["session.id"], a["user.id"], a["metadata.team"], a["gen_ai.request.parameters"]], ["s1", "u1", "support", '{"temperature":0}']);
});

test("an error, thrown or rejected, marks the span and is passed on", async () => {
  assert.throws(() => withGeneration(tracer, { name: "sync-fail" }, () => { throw new TypeError("bad"); }), TypeError);
  await assert.rejects(withGeneration(tracer, { name: "async-fail" }, async () => { throw new Error("no"); }), /no/);
  for (const name of ["sync-fail", "async-fail"]) {
    const span = finished(name);
    assert.equal(span.status.code, 2);
    assert.match(span.status.message, /(TypeError: bad|Error: no)/);
    assert.equal(span.events[0].name, "exception");
  }
});

test("the current generation follows awaits and nests; outside one, updates do nothing", async () => {
  updateCurrentGeneration({ output: "nowhere" });
  assert.equal(currentGeneration(), undefined);
  await withGeneration(tracer, { name: "outer", asType: "chain" }, async (outer) => {
    await withGeneration(tracer, { name: "inner" }, async () => {
      await Promise.resolve();
      updateCurrentGeneration({ usage: { input_tokens: 5 } });
    });
    assert.equal(currentGeneration(), outer);
  });
  const outer = finished("outer");
  const inner = finished("inner");
  assert.equal(outer.attributes["gen_ai.span.kind"], "CHAIN");
  assert.equal(inner.parentSpanContext?.spanId ?? inner.parentSpanId, outer.spanContext().spanId);
  assert.equal(inner.attributes["gen_ai.usage.input_tokens"], 5);
});

test("eval tags serialise with traceAI's keys", () => {
  assert.deepEqual(evalTagDict({ evalName: "is_json", mapping: { output: "output.value" } }), {
    type: "OBSERVATION_SPAN_TYPE", value: "LLM", eval_name: "is_json", config: {}, mapping: { output: "output.value" },
    custom_eval_name: "is_json", model: "",
  });
});
