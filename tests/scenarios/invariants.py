"""The promise to operators, as checks a scenario runs after every step and at the end.

1. every queued job a pool may serve (labels + allow-list) reached ``in_progress``
   within a bound derived from the config;
2. provider instances of this controller == store instances == forge runners
   with this controller's prefix (checked once the world is quiet);
3. no instance was deleted while the forge said its runner was busy (unless it
   was past its pool's ``max_lifetime``);
4. no pool ever exceeded its ``max``, the global cap or a provider cap (checked
   at every create);
5. no credential value in any captured log line, metric, API response,
   exception message, or provider call argument outside the credential files.

Hooks run inside provider calls, where an ``AssertionError`` would be caught as
a launch failure; so violations are recorded and raised at the next check.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, generate_latest

from scaler.provider import LABEL_CONTROLLER, LABEL_POOL, LaunchSpec

if TYPE_CHECKING:
    from tests.scenarios.sim import World


@dataclass
class Invariants:
    world: World
    violations: list[str] = field(default_factory=list)
    creates: int = 0
    deletes: int = 0
    busy_deletes_allowed: int = 0  # deletes of busy runners past max_lifetime
    _log_offset: int = 0

    # --- hooks (called from inside provider calls) ---------------------------

    def on_create(self, provider: str, spec: LaunchSpec) -> None:
        """Invariant 4 (caps) and 5 (hygiene of the launch spec)."""
        w = self.world
        self.creates += 1
        cfg = w.config
        per_pool: Counter[str] = Counter()
        per_provider: Counter[str] = Counter()
        for pname, prov in w.providers.items():
            for inst in prov.instances.values():
                if inst.info.labels.get(LABEL_CONTROLLER) != cfg.controller_id:
                    continue
                per_pool[inst.info.labels.get(LABEL_POOL, "?")] += 1
                per_provider[pname] += 1
        for pool in cfg.pools:
            if per_pool[pool.name] > pool.max:
                self.fail(
                    f"inv4: pool {pool.name} has {per_pool[pool.name]} instances > max {pool.max} (at {spec.name})"
                )
        total = sum(per_provider.values())
        if total > cfg.limits.max_instances:
            self.fail(f"inv4: {total} instances > global cap {cfg.limits.max_instances}")
        for pc in cfg.providers:
            if pc.max_instances is not None and per_provider[pc.name] > pc.max_instances:
                self.fail(f"inv4: provider {pc.name} has {per_provider[pc.name]} > cap {pc.max_instances}")
        # Hygiene: credentials travel only in files, mode 0600.
        for f in spec.files:
            if f.mode != 0o600:
                self.fail(f"inv5: credential file {f.path} of {spec.name} has mode {f.mode:o}, not 600")
            w.canaries.add(f.content.reveal())
        outside = " ".join([spec.name, spec.pool, spec.image, *spec.command, *map(str, spec.env.items())])
        outside += " " + " ".join(map(str, spec.labels.items())) + " " + repr(dict(spec.options))
        self.scan("launch spec (outside files)", [outside])

    def on_delete(self, provider: str, name: str) -> None:
        """Invariant 3: the forge must not say the runner is busy right now."""
        w = self.world
        self.deletes += 1
        runner = w.forge.runner_by_name(name)
        if runner is None or not runner.busy:
            return
        born = w.born.get(name)
        pool = w.pool_of(name)
        lifetime = pool.max_lifetime if pool is not None else 0.0
        if born is not None and w.clock.now() - born >= lifetime:
            self.busy_deletes_allowed += 1
            return
        self.fail(f"inv3: {name} deleted while its runner was busy (age {w.clock.now() - (born or 0):.0f}s)")

    # --- checks -------------------------------------------------------------

    def fail(self, message: str) -> None:
        if len(self.violations) < 50:
            self.violations.append(message)

    def scan(self, where: str, texts: Iterable[str]) -> None:
        canaries = self.world.canaries
        for text in texts:
            for canary in canaries:
                if canary in text:
                    self.fail(f"inv5: credential leaked into {where}: {text[:200]!r}")

    def raise_if_violated(self) -> None:
        if self.violations:
            raise AssertionError("invariants violated:\n  " + "\n  ".join(self.violations))

    def check_step(self) -> None:
        """Cheap checks after every step: new log lines, store error messages."""
        logs = self.world.log_stream.getvalue()
        self.scan("log line", logs[self._log_offset :].splitlines())
        self._log_offset = len(logs)
        self.scan("instance last_error", [i.last_error or "" for i in self.world.scaler.store.instances.values()])
        self.raise_if_violated()

    async def check_surfaces(self) -> None:
        """Invariant 5 over the metrics and every API response."""
        self.scan("metrics", [generate_latest(REGISTRY).decode()])
        for path in ("/api/v1/pools", "/api/v1/instances", "/healthz", "/readyz", "/metrics"):
            resp = await self.world.http.get(path)
            self.scan(f"GET {path}", [resp.text])
        for pool in self.world.config.pools:
            resp = await self.world.http.get(f"/api/v1/pools/{pool.name}")
            self.scan("GET /api/v1/pools/{name}", [resp.text])

    def check_sides_agree(self) -> None:
        """Invariant 2: nothing leaked on any side."""
        w = self.world
        cid = w.config.controller_id
        provider = {
            name
            for prov in w.providers.values()
            for name, inst in prov.instances.items()
            if inst.info.labels.get(LABEL_CONTROLLER) == cid
        }
        store = set(w.scaler.store.instances)
        runners = [r.name for r in w.forge.runners.values() if w.scaler.store.is_ours(r.name)]
        if not provider == store == set(runners):
            self.fail(
                f"inv2: sides disagree: provider-only={sorted(provider - store)} store-only={sorted(store - provider)} "
                f"runners-only={sorted(set(runners) - provider)} no-runner={sorted(provider - set(runners))}"
            )
        dupes = [n for n, c in Counter(runners).items() if c > 1]
        if dupes:
            self.fail(f"inv2: several forge runners share a name: {dupes}")

    def check_jobs_served(self, bound: float) -> None:
        """Invariant 1: every eligible job reached in_progress within ``bound``."""
        w = self.world
        for job in w.jobs.values():
            if not job.eligible:
                if (
                    job.started_at is not None
                    and job.runner is not None
                    and job.runner.startswith(f"{w.config.controller_id}-")
                ):
                    self.fail(f"allow-list: job {job.id} from {job.repository} ran on our runner {job.runner}")
                continue
            if job.started_at is None:
                self.fail(
                    f"inv1: job {job.id} ({job.repository}) never started (queued at +{job.queued_at - w.t0:.0f}s)"
                )
            elif job.started_at - job.queued_at > bound:
                self.fail(f"inv1: job {job.id} waited {job.started_at - job.queued_at:.0f}s > bound {bound:.0f}s")

    async def check_final(self, bound: float) -> None:
        self.check_step()
        self.check_jobs_served(bound)
        self.check_sides_agree()
        await self.check_surfaces()
        self.raise_if_violated()


def wait_bound(world: World, *, extra: float = 0.0) -> float:
    """An upper bound on queued → in_progress, from the config and the simulation.

    One "wave" is: the scaler learns of the job (webhook now, or the next
    resync when webhooks are lost), reconciles, creates, the runner boots and
    picks the job. When more eligible jobs than pool capacity are queued at
    once, a job may wait for earlier waves to finish (each at most the longest
    job plus the teardown/collect pass that frees the slot)."""
    cfg = world.config
    t = cfg.timing
    tick = world.tick_s
    learn = t.resync_interval + 2 * tick
    one_wave = learn + 2 * tick + world.boot_delay + 2 * tick
    capacity = max(1, min(sum(p.max for p in cfg.pools), cfg.limits.max_instances))
    waves = math.ceil(max(1, world.peak_eligible_waiting) / capacity)
    return waves * (one_wave + world.job_time[1] + 2 * tick) + extra
