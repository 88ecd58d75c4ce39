"""How a runner simulator in another process plays the instances of a
memory provider that lives inside ``runner-scaler serve``.

A real provider starts a container or VM that runs the runner binary with the
launch's credential files; the runner exits after its job and the provider
reports the exit. The memory provider (``launch_log`` / ``exit_fifo``
options) does the same through two files:

* **launch log** (append-only JSON lines, mode 0600, written by the
  provider): ``{"op": "create", "name", "labels", "command", "files": {path:
  content}, "at"}`` for every instance made, ``{"op": "delete", "name",
  "at"}`` for every instance removed. ``at`` is ``time.monotonic()``, one
  clock for every process on the machine. The simulator tails it: a create is
  its cue to boot that runner with exactly the credential the instance got.
* **exit FIFO** (read by the provider): the simulator writes ``NAME CODE``
  lines when a runner process would exit; the provider marks the instance
  exited and reports it on its ``watch()`` stream, as Docker's event stream
  or a Pod watch would.

The log holds credentials: it is for tests and benchmarks on loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scaler.provider import LaunchSpec


class LaunchLog:
    """The provider's side of the launch log."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fd = fd

    def _write(self, record: dict[str, Any]) -> None:
        # One write() per record: an O_APPEND write lands whole.
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def created(self, spec: LaunchSpec) -> None:
        files = {f.path: f.content.reveal() for f in spec.files}
        self._write(
            {
                "op": "create",
                "name": spec.name,
                "labels": dict(spec.labels),
                "command": list(spec.command),
                "files": files,
                "at": time.monotonic(),
            }
        )

    def deleted(self, name: str) -> None:
        self._write({"op": "delete", "name": name, "at": time.monotonic()})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


class ExitFifo:
    """The provider's side of the exit FIFO: ``on_exit(name, code)`` per line."""

    def __init__(self, path: str, on_exit: Callable[[str, int], None]) -> None:
        p = Path(path)
        if not p.exists():
            os.mkfifo(p, 0o600)
        elif not stat.S_ISFIFO(p.stat().st_mode):
            raise ValueError(f"exit_fifo {path} exists and is not a FIFO")
        # Read-write, so the FIFO never reports end-of-file between writers.
        self._fd = os.open(p, os.O_RDWR | os.O_NONBLOCK)
        self._on_exit = on_exit
        self._buf = b""
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            name, _, code = line.decode(errors="replace").strip().partition(" ")
            if name:
                self._on_exit(name, int(code) if code.strip().lstrip("-").isdigit() else 0)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)


class LaunchTail:
    """The simulator's side: new records of the launch log, as they are written."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: Any = None
        self._buf = ""

    def read(self) -> list[dict[str, Any]]:
        if self._fh is None:
            if not os.path.exists(self.path):
                return []
            self._fh = open(self.path, encoding="utf-8")  # noqa: SIM115 - kept open while tailing
        self._buf += self._fh.read()
        *lines, self._buf = self._buf.split("\n")
        return [json.loads(x) for x in lines if x]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


def write_exit(fd: int, name: str, code: int = 0) -> None:
    """The simulator's side of the FIFO (``fd`` opened for writing)."""
    os.write(fd, f"{name} {code}\n".encode())  # < PIPE_BUF: lands whole
