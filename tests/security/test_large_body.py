"""A 100 MB webhook body against a real uvicorn on 127.0.0.1: refused with
413 while streaming, never read into memory."""

from __future__ import annotations

import asyncio
import contextlib
import resource

import uvicorn

from tests.security.target import Target

CHUNK = b"x" * 65536
TOTAL = 100 * 1024 * 1024


async def _upload(port: int, headers: dict[str, str]) -> tuple[int | None, int, bool]:
    """Stream 100 MB chunked (no Content-Length, so the server must count),
    reading the answer while still writing. Returns (status, bytes sent,
    whether the server closed the connection after answering)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST /webhooks/fake HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\n{head}\r\n".encode()
    )
    sent = 0

    async def pump() -> None:
        nonlocal sent
        frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
        while sent < TOTAL:
            writer.write(frame)
            await writer.drain()
            sent += len(CHUNK)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    task = asyncio.create_task(pump())
    closed = False
    try:
        line = await asyncio.wait_for(reader.readline(), 30)
        task.cancel()  # stop sending; a server that keeps the connection open waits for more
        try:
            async with asyncio.timeout(3):
                while await reader.read(65536):
                    pass
            closed = True
        except ConnectionResetError:  # closed with unread upload data: RST
            closed = True
        except TimeoutError:
            closed = False
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        writer.close()
    status = int(line.split()[1]) if line.startswith(b"HTTP/1.1") else None
    return status, sent, closed


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def test_100mb_body_cut_off_while_streaming() -> None:
    async with Target() as t:
        config = uvicorn.Config(t.app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            rss_before = _max_rss_mb()
            status, sent, closed = await _upload(port, t.sign(b""))
            grew = _max_rss_mb() - rss_before
            assert status == 413
            assert closed, "the server kept the connection open to receive the rest"
            assert sent < TOTAL, "the whole 100 MB was read"
            assert grew < 30, f"memory grew by {grew:.0f} MB"
            assert t.state()[0] == 0  # nothing queued
            limit = t.config.server.max_body_bytes
            assert sent < 64 * limit + len(CHUNK) * 64
        finally:
            server.should_exit = True
            await task


async def test_declared_content_length_refused_before_reading() -> None:
    """A Content-Length over the limit is refused without reading the body."""
    async with Target() as t:
        body = b"{" + b" " * (t.config.server.max_body_bytes + 10) + b"}"
        answer = await t.post(t.sign(body), body)
        assert (answer.status, answer.body["result"]) == (413, "too_large")
        assert answer.metric_delta == 1 and len(answer.lines) == 1
