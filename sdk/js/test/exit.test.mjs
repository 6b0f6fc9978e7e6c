// A process that traces and then simply ends still sends its spans: register() flushes the batch
// when Node has nothing left to do, as the Python SDK does at exit.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { test } from "node:test";

test("spans of a process that ends without flush() reach the endpoint", async () => {
  const posts = [];
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      posts.push(request.url);
      response.writeHead(200).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const index = new URL("../dist/esm/index.js", import.meta.url).href;
  const script = `
    import { observe, register } from ${JSON.stringify(index)};
    register({ projectName: "exit", endpoint: "http://127.0.0.1:${server.address().port}" });
    observe(() => "done", { name: "last-call" })();
  `;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "inherit" });
  const code = await new Promise((resolve) => child.on("exit", resolve));
  server.close();
  assert.equal(code, 0);
  assert.deepEqual(posts, ["/v1/traces"]);
});
