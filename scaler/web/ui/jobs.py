"""Read models for the jobs page and one job's story: the journal's stories
joined with the store's live jobs, each with the pool decision and, for a
job without a runner, why (``scaler.explain.explain_job``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from scaler.app import Scaler
from scaler.config import PoolConfig
from scaler.domain.job import Job, JobState
from scaler.explain import explain_job
from scaler.journal import Key, Story
from scaler.web.ui.fmt import age, clock_time, iso, masked
from scaler.web.ui.views import S

# Waiting first, longest wait first (what an operator came for), then
# running, then finished, the latest news first.
_GROUP = {"unserved": 0, "queued": 0, "in_progress": 1, "completed": 2, "gone": 3}
FILTERS = ("waiting", "queued", "unserved", "in_progress", "completed", "gone")


class Caps:
    """Why a matched job has no pool now: each candidate pool's limit."""

    def __init__(self, scaler: Scaler, now: float) -> None:
        store, config = scaler.store, scaler.config
        self.live = Counter(i.pool for i in store.instances.values() if i.state is not S.FAILED or i.provisioned)
        self.by_provider = Counter(i.provider for i in store.instances.values())
        self.total = len(store.instances)
        self.limit = config.limits.max_instances
        self.caps = {p.name: p.max_instances for p in config.providers}
        self.unavailable = {n for n, h in store.providers.items() if not h.synced or h.unhealthy_until > now}

    def why_held(self, candidates: tuple[PoolConfig, ...]) -> str:
        parts = []
        for p in candidates:
            cap = self.caps.get(p.provider)
            if p.provider in self.unavailable:
                parts.append(f"{p.name}: provider {p.provider} unavailable (not listed yet or failing)")
            elif self.live[p.name] >= p.max:
                parts.append(f"{p.name}: at its max ({self.live[p.name]}/{p.max})")
            elif cap is not None and self.by_provider[p.provider] >= cap:
                parts.append(f"{p.name}: provider {p.provider} at its cap ({self.by_provider[p.provider]}/{cap})")
            elif self.total >= self.limit:
                parts.append(f"{p.name}: global cap limits.max_instances reached ({self.total}/{self.limit})")
            else:
                parts.append(f"{p.name}: has room; the next plan places it")
        return "; ".join(parts)


def _job_of(story: Story | None, job: Job | None, key: Key) -> Job:
    if job is not None:
        return job
    assert story is not None
    return Job(key[0], key[1], story.repository, story.labels, JobState.QUEUED)


def _state(story: Story | None, job: Job | None) -> str:
    if job is not None:
        return str(job.state)
    assert story is not None
    if story.state == "queued" and any(e.kind == "queued" for e in story.entries):
        return "gone"  # the store saw it queued and has forgotten it: it left the forge's queue
    return story.state


class _Decider:
    def __init__(self, scaler: Scaler, now: float) -> None:
        self.scaler = scaler
        self.caps = Caps(scaler, now)
        self.decisions = scaler.journal.decisions if scaler.journal is not None else {}
        self._why: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def explain(self, job: Job) -> str:
        k = (job.forge, job.repository, job.labels)
        if k not in self._why:
            self._why[k] = explain_job(job, self.scaler.config)[1]
        return self._why[k]

    def decide(self, state: str, job: Job, story: Story | None) -> tuple[str, str, str | None]:
        """(kind, text, pool) of the pool decision for one job."""
        store = self.scaler.store
        runner = job.runner_name or (story.runner_name if story else None)
        if state in ("in_progress", "completed"):
            inst = store.instances.get(runner or "")
            pool = inst.pool if inst else (story.pool if story else None)
            where = f"pool {pool}" if pool else "a runner"
            return "ran", f"ran on {where}" + (f" · runner {runner}" if runner else ""), pool
        if state == "gone":
            return "gone", "left the forge's queue before any report (taken elsewhere or cancelled)", None
        pool = self.decisions.get(job.key)
        if pool is not None:
            return "pool", f"given to pool {pool}", pool
        candidates = self.scaler.reconciler.index.candidates(job)
        if not candidates:
            why = story.why if story is not None and story.why else self.explain(job)
            return "unserved", f"no pool serves it: {why}", None  # the table shows the head, the story all
        return "held", f"held back — {self.caps.why_held(candidates)}", candidates[0].name


def _row(d: _Decider, key: Key, story: Story | None, job: Job | None, now: float) -> dict[str, Any]:
    """The facts of one row, cheap enough for every known job (sorting and
    counting need them all); :func:`_present` dresses the rows shown."""
    state = _state(story, job)
    j = _job_of(story, job, key)
    kind, text, pool = d.decide(state, j, story)
    queued_at = (story.queued_at if story else None) or j.queued_at
    started_at = j.started_at or (story.started_at if story else None)
    completed_at = j.completed_at or (story.completed_at if story else None)
    if queued_at is None:
        wait = None
    elif started_at is not None:
        wait = started_at - queued_at
    else:
        wait = None if state in ("completed", "gone") else now - queued_at
    instance = (story.instance if story else None) or j.runner_name
    news = (story.updated_at if story else None, queued_at, started_at, completed_at)
    last = max((t for t in news if t is not None), default=now)
    return {
        "forge": key[0],
        "id": key[1],
        "job": j,
        "state": "unserved" if kind == "unserved" and state == "queued" else state,
        "decision": kind,
        "raw": text,
        "pool": pool,
        "wait_raw": wait,
        "wait_s": wait or 0.0,
        "waiting": started_at is None and state in ("queued", "unserved"),
        "instance": instance,
        "instance_live": instance in d.scaler.store.instances if instance else False,
        "queued_raw": queued_at,
        "last": last,
    }


def _present(row: dict[str, Any], now: float) -> dict[str, Any]:
    text, wait, job = row["raw"], row["wait_raw"], row["job"]
    return {
        **row,
        "repository": job.repository,
        "labels": ", ".join(job.labels),
        "text": masked(text),
        # explain's reason up to its own colon: "no label match", "repository not allowed"
        "short": masked(":".join(text.split(":", 2)[:2])) if row["decision"] == "unserved" else "",
        "wait": age(now - wait, now) if wait is not None else "",
        "queued_at": clock_time(row["queued_raw"], now),
        "updated": age(row["last"], now),
    }


def _keys(scaler: Scaler) -> dict[Key, Story | None]:
    found: dict[Key, Story | None] = {}
    if scaler.journal is not None:
        found = {s.key: s for s in scaler.journal.stories()}
    for key in (*scaler.store.queued_seen, *scaler.store.in_progress):
        found.setdefault(key, None)
    return found


def _light(scaler: Scaler, key: Key, story: Story | None, job: Job | None, now: float) -> tuple[Any, ...]:
    """What sorting, counting and filtering by state need, and no more: the
    page builds this for every known job each refresh, the full row only
    for the rows it shows."""
    state = _state(story, job)
    if state == "queued" and not scaler.reconciler.index.candidates(_job_of(story, job, key)):
        state = "unserved"
    queued_at = (story.queued_at if story else None) or (job.queued_at if job else None)
    started_at = (job.started_at if job else None) or (story.started_at if story else None)
    waiting = started_at is None and state in ("queued", "unserved")
    if waiting:
        order = -(now - queued_at) if queued_at is not None else 0.0
    else:
        order = -((story.updated_at if story else None) or started_at or queued_at or now)
    return (_GROUP.get(state, 9), order, state, waiting, key, story, job)


def jobs(scaler: Scaler, state: str | None, pool: str | None, limit: int) -> dict[str, Any]:
    now = scaler.clock.now()
    d = _Decider(scaler, now)
    light = [_light(scaler, key, story, scaler.store.jobs.get(key), now) for key, story in _keys(scaler).items()]
    counts = Counter(item[2] for item in light)
    counts["waiting"] = counts["queued"] + counts["unserved"]
    if state == "waiting":
        light = [item for item in light if item[3]]
    elif state:
        light = [item for item in light if item[2] == state]
    light.sort(key=lambda item: (item[0], item[1]))
    if pool:  # the pool needs the decision: only for the jobs the state filter left
        rows = [r for item in light if (r := _row(d, item[4], item[5], item[6], now))["pool"] == pool]
    else:
        rows = [_row(d, item[4], item[5], item[6], now) for item in light[:limit]]
    return {
        "rows": [_present(r, now) for r in rows[:limit]],
        "matching": len(rows) if pool else len(light),
        "state": state or "",
        "pool": pool or "",
        "pools": [p.name for p in scaler.config.pools],
        "filters": [(f, counts.get(f, 0)) for f in FILTERS],
    }


def story(scaler: Scaler, forge: str, job_id: int) -> dict[str, Any] | None:
    now = scaler.clock.now()
    key = (forge, job_id)
    found = scaler.journal.story(forge, job_id) if scaler.journal is not None else None
    job = scaler.store.jobs.get(key)
    if found is None and job is None:
        return None
    d = _Decider(scaler, now)
    row = _present(_row(d, key, found, job, now), now)
    entries = found.entries if found is not None else []
    zero = (found.queued_at if found is not None else None) or (entries[0].at if entries else now)
    inst = scaler.store.instances.get(row["instance"] or "")
    no_runner = row["state"] in ("queued", "unserved", "gone") and row["decision"] != "ran"
    return {
        **row,
        "entries": [
            {
                "at": clock_time(e.at, now, precise=True),
                "iso": iso(e.at),
                "offset": f"{e.at - zero:+.1f} s",
                "kind": e.kind,
                "text": masked(e.text),
            }
            for e in entries
        ],
        "elided": found.elided if found is not None else 0,
        "journal": found is not None,
        "instance_state": str(inst.state) if inst is not None else None,
        "runner_id": inst.runner_id
        if inst is not None and inst.runner_id is not None
        else (found.runner_id if found else None),
        "explain": masked(d.explain(_job_of(found, job, key))) if no_runner else None,
    }
