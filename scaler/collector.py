"""The collector: deregister on the forge, then delete on the provider.

It acts on instances that are done, failed or retired, and on runners with
this controller's names that no instance owns. It reads the store but never
writes it: every outcome goes back to the reconciler as an event. A runner
the forge reports busy is never torn down, except past ``max_lifetime``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from scaler import events as ev
from scaler import metrics
from scaler.clock import Clock
from scaler.config import Config
from scaler.domain.instance import Instance, InstanceState
from scaler.errors import RunnerBusyError
from scaler.forges._limit import call_kind
from scaler.forges.base import ForgeAdapter, RunnerInfo
from scaler.loops import Inbox, TaskSet
from scaler.provider import Provider
from scaler.runner_lookup import Listing, RunnerListings
from scaler.store import Store

log = structlog.get_logger("scaler.collector")
S = InstanceState
# Retirements of one forge due in one pass from which one runner listing,
# rather than a get_runner each, tells which runners are busy.
COALESCE_AT = 16
# Teardowns run by this many workers, one teardown each per event-loop turn.
# A teardown that needs no forge call never waits on anything: spawned one
# task each, 5,000 of them ran in a single turn of the loop (seconds), and
# /healthz waited behind it.
TEARDOWN_WORKERS = 32


@dataclass
class Collector:
    config: Config
    store: Store
    forges: Mapping[str, ForgeAdapter]
    providers: Mapping[str, Provider]
    clock: Clock
    inbox: Inbox

    def __post_init__(self) -> None:
        self.tasks = TaskSet("teardown")
        self._inflight: set[str] = set()
        # Instances whose outcome was posted but not yet applied by the
        # reconciler (name -> inbox drain count at posting): not acted on again
        # until the store has caught up.
        self._settling: dict[str, int] = {}
        self._orphans_done: dict[str, int] = {}  # runner name -> runner id already deregistered
        self._sem = {p.name: asyncio.Semaphore(p.concurrency) for p in self.config.providers}
        self.wake = asyncio.Event()
        self.listings = RunnerListings(self.clock)
        self._queue: deque[tuple[Instance, float | None]] = deque()
        self._workers = 0
        self._orphans_seen = (-1, float("-inf"))  # (runner listings applied, when) at the last orphan scan

    async def run_once(self) -> None:
        now = self.clock.now()
        drains = self.inbox.drains
        self._settling = {n: d for n, d in self._settling.items() if d >= drains}
        instances = self.store.instances
        due = [
            inst
            for name in self.store.collectable
            if (inst := instances.get(name)) is not None
            and name not in self._inflight
            and name not in self._settling
            and self._due(inst, now)
        ]
        # Retirements that must ask the forge whether the runner is busy: when
        # many of one forge are due together, one listing answers them all.
        checks = Counter(self._forge_name(i) for i in due if _asks_busy(i))
        for inst in due:
            self._inflight.add(inst.name)
            coalesce = _asks_busy(inst) and checks[self._forge_name(inst)] >= COALESCE_AT
            self._queue.append((inst, now if coalesce else None))
        while self._queue and self._workers < TEARDOWN_WORKERS:
            self._workers += 1
            self.tasks.spawn(self._work())
        # Orphans appear with a runner listing; between listings, a scan each
        # collect_interval retries failed deregistrations (walking every
        # runner on every storm pass cost as much as the teardowns).
        listings, at = self._orphans_seen
        if listings != self.store.runner_listings or now - at >= self.config.timing.collect_interval:
            self._orphans_seen = (self.store.runner_listings, now)
            self._collect_orphan_runners()

    async def _work(self) -> None:
        try:
            while self._queue:
                inst, listing_since = self._queue.popleft()
                await self._teardown(inst, listing_since)
                await asyncio.sleep(0)  # the rest of the loop (health, webhooks) gets its turn
        finally:
            self._workers -= 1

    def _due(self, inst: Instance, now: float) -> bool:
        if inst.state in (S.DONE, S.FAILED):
            return True
        if inst.state is S.DELETING:
            return inst.not_before <= now  # a teardown that failed earlier
        if inst.retire_reason is None:
            return False
        return inst.state in (S.STARTING, S.IDLE) or (inst.force and inst.state is S.BUSY)

    async def _teardown(self, inst: Instance, listing_since: float | None = None) -> None:
        try:
            if inst.state is not S.DELETING:
                self.inbox.post(ev.TeardownStarted(inst.name))
            forge = self._forge_of(inst)
            with call_kind("teardown"):
                if inst.force:
                    # Past max_lifetime: stop the instance first, then the runner
                    # record (the forge may still think it busy for a moment).
                    await self._delete_instance(inst)
                    await self._deregister(forge, inst, tolerate_busy=True)
                elif not await self._remove_runner(forge, inst, listing_since):
                    log.info("teardown skipped: runner busy", instance=inst.name)
                    self.inbox.post(ev.TeardownBlocked(inst.name))
                    return
                else:
                    await self._delete_instance(inst)
            log.info("instance torn down", instance=inst.name, pool=inst.pool, reason=_reason(inst))
            self.inbox.post(ev.TornDown(inst.name))
        except RunnerBusyError:
            if inst.state in (S.IDLE, S.STARTING):
                self.inbox.post(ev.TeardownBlocked(inst.name))
            else:
                self.inbox.post(ev.TeardownFailed(inst.name, "runner still busy on the forge"))
        except Exception as exc:
            log.warning("teardown failed", instance=inst.name, error=str(exc))
            self.inbox.post(ev.TeardownFailed(inst.name, str(exc)))
        finally:
            self._settling[inst.name] = self.inbox.drains
            self._inflight.discard(inst.name)

    def _forge_of(self, inst: Instance) -> ForgeAdapter | None:
        pool = self.store.pools.get(inst.pool)
        return self.forges.get(pool.forge) if pool else None

    def _runner_id(self, forge: ForgeAdapter | None, inst: Instance) -> int | None:
        if inst.runner_id is not None or forge is None:
            return inst.runner_id
        runner = self.store.runners.get(forge.name, {}).get(inst.name)
        return runner.id if runner else None

    def _forge_name(self, inst: Instance) -> str:
        pool = self.store.pools.get(inst.pool)
        return pool.forge if pool else ""

    async def _remove_runner(self, forge: ForgeAdapter | None, inst: Instance, listing_since: float | None) -> bool:
        """Deregister the instance's runner; False when it is busy and stays.

        An instance that is done after running a job leaves its runner to a
        forge that deletes used ephemeral runners (no call; should the record
        linger, the resync lists it and the orphan collector deregisters it).
        Any other done instance (it exited without a job, or vanished) has no
        job running, so its runner is deleted without asking (one call). A
        retired idle one is asked first — from one shared listing when many
        are retired at once. A failed one (a boot timeout may be a
        runner busy before we heard of it) and a teardown retried after a
        failure ask the adapter's way."""
        runner_id = self._runner_id(forge, inst)
        if forge is None or runner_id is None:
            return True
        if inst.state is S.DONE and inst.had_task and forge.drops_used_runners:
            return True  # the forge deletes a used ephemeral runner; one that lingers is an orphan for the resync
        if inst.state is S.DONE:
            await self._timed(forge.name, "deregister", forge.delete_runner(runner_id))
            return True
        if not _asks_busy(inst):
            await self._deregister(forge, inst, tolerate_busy=False)
            return True
        if listing_since is not None:
            listing = await self._timed(forge.name, "list_runners", self.listings.since(forge, listing_since))
            runner: object = listing.by_id.get(runner_id) if isinstance(listing, Listing) else None
        else:
            runner = await self._timed(forge.name, "get_runner", forge.get_runner(runner_id))
        if not isinstance(runner, RunnerInfo):
            return True  # already gone from the forge
        if runner.busy:
            return False
        await self._timed(forge.name, "deregister", forge.delete_runner(runner_id))
        return True

    async def _deregister(self, forge: ForgeAdapter | None, inst: Instance, *, tolerate_busy: bool) -> None:
        runner_id = self._runner_id(forge, inst)
        if forge is None or runner_id is None:
            return
        try:
            await self._timed(forge.name, "deregister", forge.deregister(runner_id))
        except RunnerBusyError:
            if not tolerate_busy:
                raise
            log.warning("runner still busy after its instance was stopped", instance=inst.name)

    async def _delete_instance(self, inst: Instance) -> None:
        provider = self.providers.get(inst.provider)
        if provider is None:
            return
        timeout = self.config.provider(inst.provider).delete_timeout
        started = time.perf_counter()
        result = "error"
        try:
            async with self._sem[inst.provider], asyncio.timeout(timeout):
                await provider.delete(inst.name)
            result = "ok"
        finally:
            metrics.PROVIDER_OP.labels(inst.provider, "delete", result).observe(time.perf_counter() - started)

    async def _timed(self, forge: str, op: str, coro: object) -> object:
        started = time.perf_counter()
        result = "error"
        try:
            value = await coro  # type: ignore[misc]
            result = "ok"
            return value
        finally:
            metrics.FORGE_OP.labels(forge, op, result).observe(time.perf_counter() - started)

    # --- runners nobody owns ------------------------------------------------

    def _collect_orphan_runners(self) -> None:
        for forge_name, runners in self.store.runners.items():
            forge = self.forges.get(forge_name)
            if forge is None or not self._providers_synced(forge_name):
                continue
            for runner in runners.values():
                key = f"runner:{forge_name}:{runner.id}"
                if (
                    runner.busy
                    or not self.store.is_ours(runner.name)
                    or runner.name in self.store.instances
                    or key in self._inflight
                    or self._orphans_done.get(key) == runner.id
                ):
                    continue
                self._inflight.add(key)
                self.tasks.spawn(self._deregister_orphan(forge, key, runner.id, runner.name))
        if len(self._orphans_done) > 10_000:
            self._orphans_done.clear()

    def _providers_synced(self, forge: str) -> bool:
        # Until every provider behind this forge's pools has been listed, a
        # runner without a known instance may just be one we have not seen.
        used = {p.provider for p in self.store.pools.values() if p.forge == forge}
        return all(self.store.providers[name].synced for name in used if name in self.store.providers)

    async def _deregister_orphan(self, forge: ForgeAdapter, key: str, runner_id: int, name: str) -> None:
        try:
            with call_kind("deregister"):
                await self._timed(forge.name, "deregister", forge.deregister(runner_id))
            self._orphans_done[key] = runner_id
            log.info("orphan runner deregistered", forge=forge.name, runner=name, runner_id=runner_id)
        except RunnerBusyError:
            pass
        except Exception as exc:
            log.warning("orphan runner deregistration failed", runner=name, error=str(exc))
        finally:
            self._inflight.discard(key)

    async def close(self) -> None:
        for inst, _ in self._queue:
            self._inflight.discard(inst.name)
        self._queue.clear()
        await self.tasks.cancel()
        await self.listings.close()


def _asks_busy(inst: Instance) -> bool:
    """A retirement of a runner that may have just taken a job."""
    return not inst.force and inst.state in (S.IDLE, S.STARTING)


def _reason(inst: Instance) -> str:
    if inst.retire_reason:
        return inst.retire_reason
    if inst.state is S.FAILED:
        return inst.last_error or "failed"
    return inst.last_error or "done"
