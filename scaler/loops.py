"""Guarded background loops with heartbeats, and the event inbox.

uvicorn keeps serving when a background task dies, so every loop records a
heartbeat after each pass, and progress within a pass (``scaler.progress``:
each forge answer), and ``/healthz`` fails when a loop has shown neither for
three intervals. An exception in a pass is logged and counted; it never ends
the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from scaler import metrics, progress
from scaler.clock import Clock
from scaler.events import Event

log = structlog.get_logger("scaler.loops")

STALE_AFTER_INTERVALS = 3


@dataclass
class Heartbeats:
    clock: Clock
    _beats: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (interval, last)
    _progress: dict[str, float] = field(default_factory=dict)  # name -> last progress within a pass

    def register(self, name: str, interval: float) -> None:
        self._beats[name] = (interval, self.clock.now())
        metrics.LOOP_INTERVAL.labels(name).set(interval)

    def beat(self, name: str) -> None:
        interval, _ = self._beats.get(name, (0.0, 0.0))
        now = self.clock.now()
        self._beats[name] = (interval, now)
        metrics.LOOP_LAST_SUCCESS.labels(name).set(now)

    def progress(self, name: str) -> None:
        """A pass still running got somewhere: alive, though not finished
        (``runner_scaler_loop_last_success_timestamp_seconds`` keeps meaning
        a finished pass)."""
        self._progress[name] = self.clock.now()

    def unregister(self, name: str) -> None:
        """A loop that stopped (this replica no longer leads) exports nothing,
        so a stale-loop alert never fires on a follower."""
        self._beats.pop(name, None)
        self._progress.pop(name, None)
        for gauge in (metrics.LOOP_LAST_SUCCESS, metrics.LOOP_INTERVAL):
            with contextlib.suppress(KeyError):
                gauge.remove(name)

    def stale(self) -> dict[str, float]:
        """Loops that neither finished a pass nor made progress in one for
        3 intervals: name -> age of the last sign of life."""
        now = self.clock.now()
        out = {}
        for name, (interval, last) in self._beats.items():
            age = now - max(last, self._progress.get(name, last))
            if age > STALE_AFTER_INTERVALS * max(interval, 1.0):
                out[name] = age
        return out


class Inbox:
    """Events for the reconciler: a bounded queue for the outside world
    (webhooks; overflow is refused so the forge retries) and an unbounded one
    for the results of our own tasks, which are bounded by their concurrency
    and must never be lost."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._external: deque[Event] = deque()
        self._internal: deque[Event] = deque()
        self.wake = asyncio.Event()
        # Counts drains, so a reader can tell whether what it posted has been
        # applied to the store yet.
        self.drains = 0

    def offer(self, event: Event) -> bool:
        if len(self._external) >= self.maxsize:
            metrics.EVENTS_DROPPED.inc()
            return False
        self._external.append(event)
        self.wake.set()
        return True

    def post(self, event: Event) -> None:
        self._internal.append(event)
        self.wake.set()

    def drain(self) -> list[Event]:
        self.drains += 1
        out = list(self._internal)
        out.extend(self._external)
        self._internal.clear()
        self._external.clear()
        metrics.EVENT_QUEUE.set(0)
        return out

    def __len__(self) -> int:
        return len(self._external) + len(self._internal)


async def wait_or_timeout(event: asyncio.Event, timeout: float) -> None:
    # asyncio.timeout, not wait_for: wait_for (3.11) wraps the wait in a task
    # of its own, so a wake reached the loop two event-loop iterations after
    # set() -- each a full round of HTTP handling during a burst.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    event.clear()


async def guarded_loop(
    name: str,
    interval: float,
    body: Callable[[], Awaitable[object]],
    heartbeats: Heartbeats,
    wake: asyncio.Event | None = None,
) -> None:
    heartbeats.register(name, interval)
    alive = functools.partial(heartbeats.progress, name)
    while True:
        try:
            with progress.reporting_to(alive):
                await body()
            heartbeats.beat(name)
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.LOOP_ERRORS.labels(name).inc()
            log.exception("loop pass failed", loop=name)
        if wake is None:
            await asyncio.sleep(interval)
        else:
            await wait_or_timeout(wake, interval)


class TaskSet:
    """Background tasks whose exceptions are logged, never lost silently."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        # Not the spawning pass's progress: it does not wait for these.
        task = asyncio.get_running_loop().create_task(coro, context=progress.detached())
        self._tasks.add(task)
        metrics.INFLIGHT.labels(self.kind).set(len(self._tasks))
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        metrics.INFLIGHT.labels(self.kind).set(len(self._tasks))
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", kind=self.kind, error=repr(task.exception()))

    def __len__(self) -> int:
        return len(self._tasks)

    async def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def join(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
