"""A unix-socket proxy to dockerd that a test can cut (all connections) and restore."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path


class SocketProxy:
    def __init__(self, listen: Path, target: str) -> None:
        self.listen = listen
        self.target = target
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"unix://{self.listen}"

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.listen))

    async def cut(self) -> None:
        """Stop listening and drop every open connection (the host 'goes away')."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()
        handlers = [t for t in self._handlers if t is not asyncio.current_task()]
        for t in handlers:
            t.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.listen.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            pass  # cut(): end quietly
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_unix_connection(self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_w))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))
        self._writers.discard(writer)
        self._writers.discard(up_w)
