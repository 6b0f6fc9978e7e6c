// The pure parts of the prompt client: fallbacks, the cache's entries, splits without a sticky key,
// the digest the splits hash with, and the wire message → Prompt mapping.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { test } from "node:test";

import { blake2b } from "../dist/esm/blake2b.js";
import { Entry, cacheKey, keyParts } from "../dist/esm/prompt_cache.js";
import { Prompt, choose, resolveConfig } from "../dist/esm/index.js";
import { promptOf } from "../dist/esm/registry_client.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");

test("blake2b of 64 bytes is Node's blake2b512, for empty, short and multi-block inputs", () => {
  for (const size of [0, 3, 127, 128, 129, 1000]) {
    const data = Buffer.alloc(size, 0x61);
    assert.equal(hex(blake2b(data, 64)), createHash("blake2b512").update(data).digest("hex"));
  }
});

test("blake2b's 8-byte digest is its own, not a prefix of the 64-byte one", () => {
  // hashlib.blake2b(b"abc", digest_size=8).hexdigest()
  assert.equal(hex(blake2b(Buffer.from("abc"), 8)), "d8bb14d833d59559");
  assert.throws(() => blake2b(Buffer.from("abc"), 65), RangeError);
});

test("a fallback prompt is version 0, marked, typed by its body, and compiles", () => {
  const text = Prompt.fallback("greet", "Hello {{name}}");
  assert.deepEqual([text.version, text.isFallback, text.type, [...text.variables]], [0, true, "text", ["name"]]);
  assert.equal(text.compile({ name: "Ada" }), "Hello Ada");
  const chat = Prompt.fallback("chat", [{ role: "user", content: "{{q}}" }]);
  assert.equal(chat.type, "chat");
  assert.ok(Object.isFrozen(text) && Object.isFrozen(text.labels));
});

test("cache keys: a fetch without label or version is production's; a version fetch has no label", () => {
  assert.equal(cacheKey("p"), cacheKey("p", "production"));
  assert.deepEqual(keyParts(cacheKey("p", "canary")), { name: "p", label: "canary", version: 0 });
  assert.deepEqual(keyParts(cacheKey("p", "canary", 3)), { name: "p", label: "", version: 3 });
});

test("an entry of one version serves it; a split entry draws by weight, and a sticky key always alike", () => {
  const v = (version) => new Prompt({ name: "ab", version, type: "text", prompt: `v${version}` });
  const single = new Entry(0, "production", [[v(1), 100]]);
  assert.equal(single.pick("anyone").version, 1);
  const split = new Entry(0, "production", [[v(2), 50], [v(1), 50]]);
  assert.deepEqual(split.weights, [[1, 50], [2, 50]]);
  const seen = new Set(Array.from({ length: 200 }, () => split.pick().version));
  assert.deepEqual([...seen].sort(), [1, 2]);
  const sticky = split.pick("user-7").version;
  for (let i = 0; i < 20; i++) assert.equal(split.pick("user-7").version, sticky);
  assert.ok(split.sameAnswer(new Entry(5, "production", [[v(1), 50], [v(2), 50]])));
  assert.ok(!split.sameAnswer(new Entry(5, "production", [[v(1), 40], [v(2), 60]])));
});

test("a split without positive weight is refused", () => {
  assert.throws(() => choose([[1, 0], [2, 0]]), RangeError);
});

test("wire messages become prompts, the JSON config keeping integers, placeholders kept", () => {
  const message = {
    name: "chat", version: 4, type: "chat", text: "",
    messages: [{ role: "system", content: "Be {{tone}}", type: "", name: "" }, { role: "", content: "", type: "placeholder", name: "history" }],
    config: null, labels: ["latest", "production"], tags: ["t"], commit_message: "why", variables: ["tone"],
    config_json: '{"model": "gpt-4o", "max_tokens": 64}',
  };
  const p = promptOf(message);
  assert.deepEqual(p.prompt, [{ role: "system", content: "Be {{tone}}" }, { type: "placeholder", name: "history" }]);
  assert.deepEqual([p.name, p.version, p.type, p.config, [...p.labels], p.commitMessage, p.isFallback],
    ["chat", 4, "chat", { model: "gpt-4o", max_tokens: 64 }, ["latest", "production"], "why", false]);
  const struct = { fields: { model: { kind: "stringValue", stringValue: "gpt-4o" }, t: { kind: "numberValue", numberValue: 0.2 } } };
  assert.deepEqual(promptOf({ ...message, config_json: "", config: struct }).config, { model: "gpt-4o", t: 0.2 });
});

test("configuration comes from options first, then VANE_* variables, then the defaults", () => {
  const saved = { ...process.env };
  try {
    process.env.VANE_SECRET_KEY = "sk-vane-env";
    process.env.VANE_REGISTRY = "registry:1";
    process.env.VANE_OTLP_ENDPOINT = "http://ingest:4318/";
    delete process.env.VANE_API_URL;
    const config = resolveConfig({ registry: "mine:2" });
    assert.deepEqual([config.secretKey, config.registry, config.otlpEndpoint, config.apiUrl],
      ["sk-vane-env", "mine:2", "http://ingest:4318", "http://127.0.0.1:4318"]);
  } finally {
    process.env = saved;
  }
});
