"""A minimal HTTP/1.1 client for load generators: pre-built requests on one kept-alive connection.

The load shares the machine's 2 cores with the stack it measures, so its own CPU counts against the
figures. aiohttp spent ~1.6 ms of CPU per 450 KB POST (~3 µs per span); writing the bytes and reading
back the status line and body costs a fraction of that. Only what ingest answers is understood:
Content-Length bodies, keep-alive.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class RawPoster:
    """POSTs bodies to one URL over one connection, reconnecting when the server closed it."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes) -> int:
        """The answer's status code (its body is read and dropped)."""
        for attempt in range(3):
            try:
                return await self._exchange(body)
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()  # closed while idle (the server's keep-alive timeout): a new connection
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, body: bytes) -> int:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.writelines((self._head, b"%d\r\n\r\n" % len(body), body))
        await writer.drain()
        status = int((await reader.readuntil(b"\r\n")).split(b" ", 2)[1])
        length, keep = 0, True
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
            elif name.lower() == b"connection" and value.strip().lower() == b"close":
                keep = False
        await reader.readexactly(length)
        if not keep:
            await self.close()
        return status

    async def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
