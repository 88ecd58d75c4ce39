"""A small HTTP/1.1 keep-alive client on raw asyncio streams.

For the test and benchmark processes that play the outside world (the fake
forge's webhook deliveries, the runner simulator, the prober), so that they
spend as little CPU as they can: no HTTP library on the hot path (httpx costs
about 1 ms of CPU a request). Answers must carry ``content-length``
(uvicorn's do).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping


class RawHTTP:
    def __init__(self, host: str, port: int, conns: int = 32) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(conns)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        raw = head.encode() + b"\r\n" + body
        async with self._slots:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
            try:
                status, payload, keep = await _roundtrip(*conn, raw)
            except (ConnectionError, asyncio.IncompleteReadError):
                conn[1].close()
                if not reused:
                    raise
                # The server closed an idle keep-alive connection: once more on a new one.
                conn = await asyncio.open_connection(self.host, self.port)
                status, payload, keep = await _roundtrip(*conn, raw)
            except BaseException:
                conn[1].close()
                raise
            if keep:
                self._idle.append(conn)
            else:
                conn[1].close()
            return status, payload

    async def close(self) -> None:
        for _, w in self._idle:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
        self._idle.clear()


async def _roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes, bool]:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, keep = 0, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
    body = await reader.readexactly(length) if length else b""
    return status, body, keep
