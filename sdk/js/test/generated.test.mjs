// The committed schema (src/generated/prompts_proto.ts) is what proto/vane/v1/prompts.proto gives now.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { render } from "../scripts/generate-proto.mjs";

test("the generated gRPC schema matches proto/vane/v1 (else: npm run generate)", () => {
  assert.equal(readFileSync(new URL("../src/generated/prompts_proto.ts", import.meta.url), "utf8"), render());
});
