"""A one-line progress bar on a terminal (``trace export``); silent elsewhere."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.requests = 0
        self.jobs = 0
        self.done = 0.0  # share of the work done, 0..1
        self.note = ""
        self._last = 0.0

    def update(self, *, done: float | None = None, jobs: int | None = None, note: str | None = None) -> None:
        if done is not None:
            self.done = max(self.done, min(1.0, done))
        if jobs is not None:
            self.jobs = jobs
        if note is not None:
            self.note = note
        self.draw()

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        filled = int(self.done * 30)
        bar = "#" * filled + "-" * (30 - filled)
        self.stream.write(
            f"\r[{bar}] {self.done:4.0%}  {self.requests} requests  {self.jobs} jobs  {self.note[:40]:<40}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
