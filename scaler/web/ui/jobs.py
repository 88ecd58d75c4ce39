"""Read models for the jobs page and one job's story: the journal's stories
joined with the store's live jobs, each with the pool decision and, for a
job without a runner, why (``scaler.explain.explain_job``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from scaler.app import Scaler
from scaler.config import PoolConfig
from scaler.domain.job import Job
from scaler.journal import Key, Story
from scaler.web.ui.fmt import Pager, age, clock_time, iso, job_link, masked
from scaler.web.ui.index import WAITING_BUCKETS, Indexes, InstanceIndex, job_of, job_state, last_news
from scaler.web.ui.slices import sliced

FILTERS = ("waiting", "queued", "unserved", "in_progress", "completed", "gone")


class Caps:
    """Why a matched job has no pool now: each candidate pool's limit (the
    counts from the instance index, the limits from the config)."""

    def __init__(self, scaler: Scaler, instances: InstanceIndex, now: float) -> None:
        store, config = scaler.store, scaler.config
        self.instances = instances
        self.total = instances.count()
        self.limit = config.limits.max_instances
        self.caps = {p.name: p.max_instances for p in config.providers}
        self.unavailable = {n for n, h in store.providers.items() if not h.synced or h.unhealthy_until > now}
        self.crash_loops = store.boot_failures.held(now)
        self.boot_failures, self.now = store.boot_failures, now

    def why_held(self, candidates: tuple[PoolConfig, ...]) -> str:
        parts = []
        for p in candidates:
            cap, live, used = (
                self.caps.get(p.provider),
                self.instances.live(p.name),
                self.instances.of_provider(p.provider),
            )
            if p.provider in self.unavailable:
                parts.append(f"{p.name}: provider {p.provider} unavailable (not listed yet or failing)")
            elif p.name in self.crash_loops:
                ends, until, error = self.boot_failures.streak(p.name)
                parts.append(
                    f"{p.name}: crash-loop backoff for {until - self.now:.0f}s more"
                    f" ({ends} runners in a row ended before coming online; last: {error or 'no error given'})"
                )
            elif live >= p.max:
                parts.append(f"{p.name}: at its max ({live}/{p.max})")
            elif cap is not None and used >= cap:
                parts.append(f"{p.name}: provider {p.provider} at its cap ({used}/{cap})")
            elif self.total >= self.limit:
                parts.append(f"{p.name}: global cap limits.max_instances reached ({self.total}/{self.limit})")
            else:
                parts.append(f"{p.name}: has room; the next plan places it")
        return "; ".join(parts)


class _Decider:
    def __init__(self, scaler: Scaler, indexes: Indexes, now: float) -> None:
        self.scaler, self.indexes, self.now = scaler, indexes, now
        self._caps: Caps | None = None
        self.explain = indexes.explain

    def decide(self, bucket: str, pool: str | None, job: Job, story: Story | None) -> tuple[str, str]:
        """(kind, text) of the pool decision for one job."""
        if bucket in ("in_progress", "completed"):
            runner = job.runner_name or (story.runner_name if story else None)
            where = f"pool {pool}" if pool else "a runner"
            return "ran", f"ran on {where}" + (f" · runner {runner}" if runner else "")
        if bucket == "gone":
            return "gone", "left the forge's queue before any report (taken elsewhere or cancelled)"
        if bucket == "assigned":
            return "pool", f"given to pool {pool}"
        if bucket == "unserved":
            why = story.why if story is not None and story.why else self.explain(job)
            return "unserved", f"no pool serves it: {why}"  # the table shows the head, the story all
        if self._caps is None:
            self._caps = Caps(self.scaler, self.indexes.instances, self.now)
        return "held", f"held back — {self._caps.why_held(self.scaler.reconciler.index.candidates(job))}"


def _row(d: _Decider, key: Key, story: Story | None, job: Job | None, now: float) -> dict[str, Any]:
    """The facts of one row shown (the index has placed and counted it)."""
    bucket, pool = d.indexes.jobs.where(key, story, job)
    j = job_of(story, job, key)
    kind, text = d.decide(bucket, pool, j, story)
    queued_at = (story.queued_at if story else None) or j.queued_at
    started_at = j.started_at or (story.started_at if story else None)
    state = "unserved" if bucket == "unserved" else job_state(story, job)
    if queued_at is None:
        wait = None
    elif started_at is not None:
        wait = started_at - queued_at
    else:
        wait = None if state in ("completed", "gone") else now - queued_at
    instance = (story.instance if story else None) or j.runner_name
    return {
        "forge": key[0],
        "id": key[1],
        "job": j,
        "state": state,
        "decision": kind,
        "raw": text,
        "pool": pool,
        "wait_raw": wait,
        "waiting": started_at is None and bucket in WAITING_BUCKETS,
        "instance": instance,
        "instance_live": instance in d.scaler.store.instances if instance else False,
        "queued_raw": queued_at,
        "last": last_news(story, job) or now,
    }


def _present(row: dict[str, Any], now: float) -> dict[str, Any]:
    wait, job = row["wait_raw"], row["job"]
    text = masked(row["raw"])
    return {
        **row,
        "link": job_link(row["forge"], row["id"]),
        "state_label": row["state"].replace("_", " "),
        "instance_link": f"/ui/instances?{urlencode({'pool': row['pool'] or ''})}" if row["instance_live"] else "",
        "repository": job.repository,
        "labels": ", ".join(job.labels),
        "text": text,
        # explain's reason up to its own colon: "no label match", "repository not allowed"
        "short": ":".join(text.split(":", 2)[:2]) if row["decision"] == "unserved" else "",
        "wait": age(now - wait, now) if wait is not None else "",
        "queued_at": clock_time(row["queued_raw"], now),
        "updated": age(row["last"], now),
    }


async def jobs(
    scaler: Scaler, indexes: Indexes, state: str | None, pool: str | None, page: int, limit: int
) -> dict[str, Any]:
    """One page of jobs, read from the index (caught up by the caller): the
    work is the rows shown, whatever the number of jobs, a slice at a time."""
    now = scaler.clock.now()
    index, d = indexes.jobs, _Decider(scaler, indexes, now)
    matching = index.count(state, pool)
    pager = Pager(page, limit, matching)
    journal = indexes.journal
    rows: list[SimpleNamespace] = []

    def add(key: Key) -> None:
        story, job = journal.story(*key), scaler.store.jobs.get(key)
        if story is not None or job is not None:  # (gone since the catch-up: the next refresh tells)
            rows.append(SimpleNamespace(**_present(_row(d, key, story, job, now), now)))

    await sliced(index.keys(state, pool, pager.offset, limit), add)
    return {
        "rows": rows,
        "matching": matching,
        "pager": pager,
        "state": state or "",
        "pool": pool or "",
        "pools": [p.name for p in scaler.config.pools],
        "filters": [(f, index.count(f, pool)) for f in FILTERS],
    }


def story(scaler: Scaler, indexes: Indexes, forge: str, job_id: int) -> dict[str, Any] | None:
    now = scaler.clock.now()
    key = (forge, job_id)
    found = scaler.journal.story(forge, job_id) if scaler.journal is not None else None
    job = scaler.store.jobs.get(key)
    if found is None and job is None:
        return None
    d = _Decider(scaler, indexes, now)
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
        "explain": masked(d.explain(job_of(found, job, key))) if no_runner else None,
    }
