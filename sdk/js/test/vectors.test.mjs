// The shared prompt vectors (tests/vectors/prompts.json): the Python SDK and the registry pass the
// same file (tests/unit/test_prompt_vectors.py), so the SDKs provably compile and split alike.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Prompt, choose, compileBody, variablesOf } from "../dist/esm/index.js";

const vectors = JSON.parse(readFileSync(new URL("../../../tests/vectors/prompts.json", import.meta.url), "utf8"));

for (const c of vectors.compile) {
  test(`compile: ${c.case}`, () => {
    assert.deepEqual(compileBody(c.body, c.values), c.expected);
    assert.deepEqual(Prompt.fallback("p", c.body).compile(c.values), c.expected);
  });
}

test("variables are the vector names", () => {
  for (const c of vectors.variables) assert.deepEqual(variablesOf(c.body), c.expected, JSON.stringify(c.body));
});

test("a sticky split draws the vector versions", () => {
  const drawn = vectors.split.map((c) => choose(c.weights, c.sticky_key, c.salt));
  assert.deepEqual(drawn, vectors.split.map((c) => c.version));
});
