"""One limit on a forge's calls in flight, fair between kinds of work.

Every HTTP call a forge adapter makes takes a slot first (``ForgeHTTP``):
mints, teardowns, resyncs and orphan deregistrations share ``concurrency``
slots, and the HTTP client's connection pool has exactly as many
connections, so a call never waits (or times out) inside the pool: work
beyond the limit waits here, in order, and its request timeout only starts
once it is sent. Waiters queue per kind and are served round-robin, so a
storm of 5,000 teardowns delays a mint or a resync page by at most one
call per other kind, not by 5,000.

Each slot has an HTTP client of its own with one keep-alive connection
(``ForgeHTTP``): httpcore's pool re-checks every connection it holds on
every request it starts and finishes (a ``poll`` of each idle socket), so
one pool of 16 connections costs about twice the CPU per call of 16 pools of
one.

The kind is a context variable set by the task doing the work
(:func:`call_kind`), so adapters need not pass it along.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar

from prometheus_client import Gauge

CALL_KIND: ContextVar[str] = ContextVar("forge_call_kind", default="other")

FORGE_CALLS_IN_FLIGHT = Gauge("runner_scaler_forge_calls_in_flight", "Forge calls being made", ["forge"])
FORGE_CALLS_IN_FLIGHT_MAX = Gauge(
    "runner_scaler_forge_calls_in_flight_max", "Most forge calls ever in flight at once (<= concurrency)", ["forge"]
)
FORGE_CALLS_WAITING = Gauge(
    "runner_scaler_forge_calls_waiting", "Forge calls waiting for a slot (forges[].concurrency)", ["forge", "kind"]
)


@contextlib.contextmanager
def call_kind(kind: str) -> Iterator[None]:
    """Forge calls made inside count as ``kind`` (mint, teardown, resync, deregister)."""
    token = CALL_KIND.set(kind)
    try:
        yield
    finally:
        CALL_KIND.reset(token)


class FairLimiter:
    def __init__(self, limit: int, forge: str = "") -> None:
        self.limit = max(1, limit)
        self.forge = forge
        self.in_flight = 0
        self.max_in_flight = 0
        self._free = list(range(self.limit - 1, -1, -1))  # slot numbers not in use
        self._queues: dict[str, deque[asyncio.Future[int]]] = {}
        self._turns: deque[str] = deque()  # kinds with waiters, in round-robin order

    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @contextlib.asynccontextmanager
    async def slot(self, kind: str | None = None) -> AsyncIterator[int]:
        """Hold one slot while inside; yields its number (0 … limit - 1)."""
        number = await self._acquire(kind or CALL_KIND.get())
        try:
            yield number
        finally:
            self._release(number)

    async def _acquire(self, kind: str) -> int:
        if self.in_flight < self.limit and not self._turns:
            return self._took()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(kind)
        if queue is None:
            queue = self._queues[kind] = deque()
            self._turns.append(kind)
        queue.append(fut)
        FORGE_CALLS_WAITING.labels(self.forge, kind).inc()
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release(fut.result())  # granted in the instant we were cancelled: hand it on
            raise
        finally:
            FORGE_CALLS_WAITING.labels(self.forge, kind).dec()

    def _took(self) -> int:
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight
            FORGE_CALLS_IN_FLIGHT_MAX.labels(self.forge).set(self.in_flight)
        FORGE_CALLS_IN_FLIGHT.labels(self.forge).set(self.in_flight)
        return self._free.pop()

    def _release(self, number: int) -> None:
        self._free.append(number)
        self.in_flight -= 1
        FORGE_CALLS_IN_FLIGHT.labels(self.forge).set(self.in_flight)
        self._grant()

    def _grant(self) -> None:
        while self.in_flight < self.limit and self._turns:
            kind = self._turns.popleft()
            queue = self._queues[kind]
            fut = queue.popleft()
            if queue:
                self._turns.append(kind)
            else:
                del self._queues[kind]
            if not fut.done():  # a cancelled waiter gives its turn away
                fut.set_result(self._took())
