// The CommonJS build: require() gives the same API as the ES module build.
const assert = require("node:assert/strict");
const { test } = require("node:test");

test("require and import give the same names", async () => {
  const cjs = require("vane-sdk");
  const esm = await import("vane-sdk");
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).filter((k) => k !== "default").sort());
  assert.equal(new cjs.Prompt({ name: "p", version: 1, type: "text", prompt: "Hi {{n}}" }).compile({ n: 1 }), "Hi 1");
  assert.equal(typeof cjs.Vane, "function");
});
