"""A local server that speaks OpenAI's chat-completions protocol, for testing the LLM judge.

It runs on its own event loop in a thread. The path picks the behaviour, so one server serves
many tests at once: `{url}/<behaviour>/v1` is the base URL a judge config names, where behaviour is
  ok            a JSON verdict {"score": server.score, "explanation": ...}
  nonjson       200 with prose content instead of JSON
  429           429 with Retry-After: 0
  500           500
  timeout       answers after 30 s (longer than any test's client timeout)
  flaky-N-key   the first N requests for `key` answer 500, the rest like ok
  chat          an assistant's reply with `usage` tokens, streamed as server-sent events when the
                request asks (`stream`, with a last usage chunk under `stream_options.include_usage`)
and every answer waits `latency` seconds first (200 ms in the benchmark).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from typing import Any


class ChatCompletionsServer:
    def __init__(self, latency: float = 0.0, score: float = 0.75) -> None:
        self.latency = latency
        self.score = score
        self.usage = (120, 30)  # (prompt, completion) tokens of every answer
        self.requests: Counter[str] = Counter()  # by behaviour path segment
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="chat-completions")
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def base_url(self, behaviour: str = "ok") -> str:
        return f"{self.url}/{behaviour}/v1"

    def start(self) -> ChatCompletionsServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        self._thread.join(5)
        self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=4096)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                path = request_line.decode().split(" ")[1]
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await reader.readexactly(length) if length else b""
                status, headers, payload = await self._answer(path, body)
                content_type = headers.pop("Content-Type", "application/json")
                head = f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(payload)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(head.encode() + b"\r\n" + payload)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        behaviour = path.strip("/").split("/")[0]
        self.requests[behaviour] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            request = json.loads(body or b"{}")
            self.bodies.append(request)
            if self.latency:
                await asyncio.sleep(self.latency)
            if behaviour.startswith("flaky-"):
                _, failures, _key = behaviour.split("-", 2)
                behaviour = "500" if self.requests[path.strip("/").split("/")[0]] <= int(failures) else "ok"
            if behaviour == "429":
                return 429, {"Retry-After": "0"}, b'{"error": {"message": "Rate limit reached", "type": "requests"}}'
            if behaviour == "500":
                return 500, {}, b'{"error": {"message": "The server had an error", "type": "server_error"}}'
            if behaviour == "timeout":
                await asyncio.sleep(30)
            if behaviour == "chat":
                return self._chat(request)
            content = (
                "I think this answer is pretty good overall!"
                if behaviour == "nonjson"
                else json.dumps({"score": self.score, "explanation": "judged by the test server"})
            )
            return 200, {}, json.dumps(_completion(request.get("model", "test-judge"), content, self.usage)).encode()
        finally:
            self.in_flight -= 1

    def _chat(self, request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        model = request.get("model", "gpt-4o")
        if not request.get("stream"):
            return 200, {}, json.dumps(_completion(model, REPLY, self.usage)).encode()
        chunks = [_chunk(model, {"role": "assistant", "content": ""})]
        chunks += [_chunk(model, {"content": word}) for word in re.findall(r"\S+\s*", REPLY)]
        chunks.append(_chunk(model, {}, "stop"))
        if (request.get("stream_options") or {}).get("include_usage"):
            chunks.append({**_chunk(model, {}), "choices": [], "usage": _usage(self.usage)})
        events = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
        return 200, {"Content-Type": "text/event-stream"}, events.encode()


REPLY = "Hello! How can I help you today?"


def _usage(usage: tuple[int, int]) -> dict[str, int]:
    return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}


def _chunk(model: str, delta: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _completion(model: str, content: str, usage: tuple[int, int] = (120, 30)) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": _usage(usage),
    }
