"""Resync: re-read the truth from the forges and the providers.

Webhooks are hints; this is what makes a lost, duplicated or reordered
delivery only delay work (DESIGN, "Level-triggered"). Each read becomes one
event for the reconciler; a failed read is logged and retried next pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from scaler import events as ev
from scaler import metrics
from scaler.clock import Clock
from scaler.errors import PollSkipped
from scaler.forges._limit import call_kind
from scaler.forges.base import ForgeAdapter
from scaler.loops import Inbox
from scaler.provider import Provider

log = structlog.get_logger("scaler.resync")


@dataclass
class Resync:
    forges: Mapping[str, ForgeAdapter]
    providers: Mapping[str, Provider]
    clock: Clock
    inbox: Inbox

    async def run_once(self) -> bool:
        """One full read; True when every provider could be listed."""
        # Providers first: a runner is only an orphan if no provider has its
        # instance, so the instances must be known before the runners.
        listed = await asyncio.gather(*(self._provider(name, p) for name, p in self.providers.items()))
        await asyncio.gather(*(self._forge(f) for f in self.forges.values()))
        return all(listed)

    async def _provider(self, name: str, provider: Provider) -> bool:
        started_at = self.clock.now()
        t0 = time.perf_counter()
        try:
            infos = await provider.list()
        except Exception as exc:
            metrics.PROVIDER_OP.labels(name, "list", "error").observe(time.perf_counter() - t0)
            log.warning("provider list failed", provider=name, error=str(exc))
            self.inbox.post(ev.ProviderSyncFailed(name, str(exc)))
            return False
        metrics.PROVIDER_OP.labels(name, "list", "ok").observe(time.perf_counter() - t0)
        self.inbox.post(ev.ProviderSynced(name, tuple(infos), started_at))
        return True

    async def _forge(self, forge: ForgeAdapter) -> bool:
        with call_kind("resync"):
            return await self._read_forge(forge)

    async def _read_forge(self, forge: ForgeAdapter) -> bool:
        # Runners first, then the queue: a runner listed busy took its job
        # before the queue listing began, so that listing no longer holds the
        # job and the store may drop its took-a-job guess. Listed the other way
        # round, a long paged queue listing can show a job still waiting that a
        # runner took before the runner pages were read: its guess dropped, the
        # job looked unserved and got a second runner (5,000-job storm: 6,015
        # mints).
        started_at = self.clock.now()
        try:
            runners = await forge.list_runners()
        except Exception as exc:
            log.warning("forge runner listing failed", forge=forge.name, error=str(exc))
            return False
        queue_started_at = self.clock.now()
        unknown = False
        try:
            queued = await forge.list_queued_jobs()
        except PollSkipped as exc:
            log.debug("queued-job poll skipped", forge=forge.name, reason=str(exc))
            queued, unknown = None, True
        except Exception as exc:
            # The runners are still worth applying: they drive idle/busy and orphans.
            log.warning("forge job listing failed", forge=forge.name, error=str(exc))
            queued, unknown = None, True
        jobs = None if queued is None else tuple(queued)
        self.inbox.post(
            ev.ForgeSynced(
                forge.name, jobs, tuple(runners), started_at, jobs_unknown=unknown, queue_started_at=queue_started_at
            )
        )
        return True


async def watch_provider(name: str, provider: Provider, inbox: Inbox, clock: Clock) -> None:
    """Forward a provider's change stream; restart it with back-off when it breaks."""
    delay = 1.0
    while True:
        try:
            async for info in provider.watch():
                inbox.post(ev.InstanceObserved(name, info))
                delay = 1.0
            delay = 1.0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("provider watch broke", provider=name, error=str(exc))
            delay = min(delay * 2, 60.0)
        await asyncio.sleep(delay)  # real time: a broken stream must not spin
