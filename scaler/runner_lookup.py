"""Runner listings shared between the tasks that need to look runners up.

A teardown that must know whether its runner is busy, or a mint retried after
an unknown outcome that must know whether a runner of its name exists, needs
a picture of the forge taken *after* a given moment. Many such tasks at once
(hundreds of idle instances retired together, a forge that timed out every
mint for a minute) share one listing: a listing begun at or after the moment
a task asks about answers it, whether it is still running or done; only when
there is none is a new one started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from scaler.clock import Clock
from scaler.forges._limit import call_kind
from scaler.forges.base import ForgeAdapter, RunnerInfo


@dataclass(frozen=True, slots=True)
class Listing:
    started_at: float
    by_id: Mapping[int, RunnerInfo]

    def named(self, name: str) -> list[RunnerInfo]:
        return [r for r in self.by_id.values() if r.name == name]


class RunnerListings:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._last: dict[str, Listing] = {}
        self._running: dict[str, tuple[float, asyncio.Task[Listing]]] = {}
        self.listed = 0  # listings made (tests, metrics of a sort)

    async def since(self, forge: ForgeAdapter, moment: float) -> Listing:
        """A listing of ``forge`` begun at or after ``moment``."""
        last = self._last.get(forge.name)
        if last is not None and last.started_at >= moment:
            return last
        running = self._running.get(forge.name)
        if running is None or running[0] < moment:
            started = self.clock.now()
            task = asyncio.ensure_future(self._list(forge, started))
            running = self._running[forge.name] = (started, task)
        # Shielded: one waiter cancelled (its teardown cancelled) must not
        # cancel the listing every other waiter shares.
        return await asyncio.shield(running[1])

    async def _list(self, forge: ForgeAdapter, started: float) -> Listing:
        try:
            with call_kind("lookup"):
                runners = await forge.list_runners()
            listing = Listing(started, {r.id: r for r in runners})
            self.listed += 1
            last = self._last.get(forge.name)
            if last is None or last.started_at <= started:
                self._last[forge.name] = listing
            return listing
        finally:
            current = self._running.get(forge.name)
            if current is not None and current[0] == started:
                del self._running[forge.name]

    async def close(self) -> None:
        tasks = [t for _, t in self._running.values()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
