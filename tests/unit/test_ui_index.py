"""The UI's incremental indexes, driven through the real core (fake forge,
in-memory provider, injected clock): after any run of events they hold what a
rebuild from scratch holds, a refresh reads only the rows it shows, and a
catch-up gives the event loop back between slices."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from scaler.changes import Changes
from scaler.web.ui import jobs as job_views
from scaler.web.ui import slices
from scaler.web.ui.charts import POINTS, thin
from scaler.web.ui.fmt import Pager
from scaler.web.ui.history import History, Sample
from scaler.web.ui.index import STATE_VALUES, Indexes, InstanceIndex, JobIndex, unique
from tests.conftest import Harness, base_config, make_harness

FILTERS = (None, *job_views.FILTERS)
BUCKETS = ("assigned", "held", "unserved", "in_progress", "completed", "gone")


def two_pools(journal_jobs: int = 2000) -> dict[str, Any]:
    data = base_config(ui={"journal_jobs": journal_jobs})
    data["pools"][0]["max"] = 2
    data["pools"].append({**data["pools"][0], "name": "large", "labels": ["large:host"], "max": 1})
    return data


def rebuilt(h: Harness) -> tuple[JobIndex, InstanceIndex]:
    """Indexes built from scratch from what the store and journal hold now."""
    journal, store = h.scaler.journal, h.scaler.store
    assert journal is not None
    jobs, instances = JobIndex(h.scaler, journal), InstanceIndex(h.scaler, journal)
    for key in unique([s.key for s in journal.stories()], list(store.queued_seen), list(store.in_progress)):
        jobs.redo(key)
    for name in list(store.instances):
        instances.redo(name)
    return jobs, instances


def assert_same(idx: Indexes, h: Harness) -> None:
    jobs, instances = rebuilt(h)
    for pool in (None, "small", "large"):
        for f in FILTERS:
            assert idx.jobs.keys(f, pool, 0, 10_000) == jobs.keys(f, pool, 0, 10_000), (f, pool)
            assert idx.jobs.count(f, pool) == jobs.count(f, pool)
        for b in BUCKETS:
            assert idx.jobs.in_bucket(b, pool=pool) == jobs.in_bucket(b, pool=pool), (b, pool)
        for s in (None, *STATE_VALUES):
            assert idx.instances.names(s, pool, 0, 10_000) == instances.names(s, pool, 0, 10_000), (s, pool)
    assert idx.jobs.oldest_queued_at() == jobs.oldest_queued_at()
    assert idx.jobs.in_bucket("unserved", forge="fake") == jobs.in_bucket("unserved", forge="fake")
    assert len(idx.instances.shelves) == len(h.scaler.store.instances)


async def step(h: Harness, rng: random.Random, queued: list[int], running: list[int], done: list[str]) -> None:
    """One thing that happens to a scaler: deliveries, runners, the forge's queue, time."""
    op = rng.randrange(9)
    if op <= 1:
        queued.append(h.queue(labels=(rng.choice(["ubuntu-latest", "large"]),)))
    elif op == 2:
        _, headers, body = h.forge.queue_job(rng.choice(["acme/app", "elsewhere/x"]), ["windows"])
        assert h.scaler.journal is not None  # a delivery no pool serves: the route answers, the journal keeps it
        delivery = h.scaler.forges["fake"].parse(headers, body)
        assert delivery.job is not None
        h.scaler.journal.not_served(delivery.job, "no label match", delivery.delivery_id)
    elif op == 3 and queued:
        job = queued.pop(rng.randrange(len(queued)))
        free = [i.name for i in h.scaler.store.instances.values() if str(i.state) == "idle"]
        if free:
            h.deliver(*h.forge.start_job(job, rng.choice(free)))
            running.append(job)
    elif op == 4 and running:
        job = running.pop(0)
        h.deliver(*h.forge.complete_job(job))
        done.append(h.forge.jobs[job].runner_name or "")
    elif op == 7 and done:
        runner = done.pop(0)
        if runner in h.provider.instances:
            h.provider.finish(runner)  # its runner exits later: the teardown is news for the job
    elif op == 5 and queued:
        h.forge.jobs[queued.pop(0)].status = "completed"  # cancelled: gone from the next listing
    elif op == 6:
        h.clock.advance(rng.choice([30.0, 4000.0]))  # 4000 s: past the tombstone TTL, jobs expire
    await (h.sync() if rng.random() < 0.5 else h.scaler.settle())
    h.clock.advance(0.5)


@pytest.mark.parametrize("journal_jobs", [10, 2000])  # 10: most queued jobs have no story
@pytest.mark.parametrize("seed", range(5))
async def test_incremental_index_matches_a_rebuild(seed: int, journal_jobs: int) -> None:
    """Whatever happened since, a caught-up index holds exactly what a rebuild from scratch holds."""
    h = make_harness(two_pools(journal_jobs))
    idx = Indexes(h.scaler)
    rng = random.Random(seed)
    queued: list[int] = []
    running: list[int] = []
    done: list[str] = []
    await h.sync()
    for n in range(40):
        await step(h, rng, queued, running, done)
        if n % 3 == 0:  # not after every step: changes pile up between refreshes
            await idx.catch_up()
            assert_same(idx, h)
    await idx.catch_up()
    assert_same(idx, h)
    assert idx.jobs.count(None) > 0 and idx.instances.count() >= 0


async def test_a_refresh_reads_only_the_rows_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """With 300 queued jobs a page of 10 builds 10 rows, and a refresh with nothing changed redoes no key."""
    h = make_harness(two_pools())
    await h.sync()
    for _ in range(300):
        h.queue()
    await h.sync()
    idx = Indexes(h.scaler)
    await idx.catch_up()
    built, redone = [], []
    row, redo = job_views._row, JobIndex.redo
    monkeypatch.setattr(job_views, "_row", lambda *a: built.append(1) or row(*a))
    monkeypatch.setattr(JobIndex, "redo", lambda self, key: redone.append(key) or redo(self, key))
    await idx.catch_up()
    page = await job_views.jobs(h.scaler, idx, "waiting", None, 3, 10)
    assert (len(built), redone) == (10, [])
    assert page["matching"] == 300 and page["pager"].first == 21 and len(page["rows"]) == 10
    waits = [r.id for r in page["rows"]]
    assert waits == sorted(waits)  # queued in id order: the longest waiting first
    h.queue()
    await h.scaler.settle()
    await idx.catch_up()
    assert ("fake", h.forge.jobs[max(h.forge.jobs)].id) in redone and len(redone) < 10


async def test_catch_up_gives_the_loop_back_and_is_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    """A catch-up yields between slices, and callers that overlap share one."""
    h = make_harness(two_pools())
    await h.sync()
    for _ in range(50):
        h.queue()
    await h.sync()
    idx = Indexes(h.scaler)
    monkeypatch.setattr(slices, "SLICE_S", 0.0)  # a slice per key
    redone: list[object] = []
    redo = JobIndex.redo
    monkeypatch.setattr(JobIndex, "redo", lambda self, key: redone.append(key) or redo(self, key))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.gather(idx.catch_up(), idx.catch_up(), idx.catch_up())
    tick.cancel()
    assert len(redone) == len(set(redone)) == idx.jobs.count(None)  # once each, not once per caller
    assert ticks >= len(redone)  # the loop ran other work between keys


async def test_adopted_and_forgotten_reach_the_index() -> None:
    """Instances adopted at a rebuild, and jobs the store forgets, are in the index as the store has them."""
    h = make_harness()
    await h.sync()
    job = h.queue()
    await h.sync()
    idx = Indexes(h.scaler)
    await idx.catch_up()
    h.scaler._fresh_state()  # a restart: a new store, rebuilt from the provider and forge
    h.forge.jobs[job].status = "completed"  # meanwhile cancelled on the forge
    await h.scaler.rebuild()
    await idx.catch_up()
    assert_same(idx, h)
    assert idx.instances.count() == len(h.scaler.store.instances) == 1
    assert idx.jobs.keys("gone", None, 0, 10) == [("fake", job)]
    assert h.scaler.journal is not None
    trail = h.scaler.journal.story("fake", job)
    assert trail is not None and any("adopted" in e.text for e in trail.entries)


def test_changes_are_bounded() -> None:
    """Past its limit a change set says "everything", then starts afresh."""
    changes: Changes[int] = Changes(limit=3)
    assert changes.take() is None  # a reader's first look is from scratch
    for k in range(3):
        changes.mark(k)
    assert changes.take() == {0, 1, 2}
    for k in range(4):
        changes.mark(k)
    assert (len(changes), changes.take(), changes.take()) == (0, None, set())


def test_pager_keeps_the_page_in_range() -> None:
    """Page numbers are clamped to the pages there are; rows are numbered from 1."""
    assert [(p.number, p.offset, p.first, p.last, p.pages) for p in (Pager(0, 10, 95), Pager(99, 10, 95))] == [
        (1, 0, 1, 10, 10),
        (10, 90, 91, 95, 10),
    ]
    assert (Pager(3, 10, 0).pages, Pager(3, 10, 0).first, Pager(3, 10, 0).last) == (1, 0, 0)


def test_history_keeps_a_bounded_slot_per_sample_or_more() -> None:
    """Young, a pool keeps each sample; past 2 x POINTS it merges them (the highest kept), never more."""
    history = History(every=1.0)
    for i in range(2 * POINTS):
        history.add("p", Sample(float(i), i % 7, float(i), None))
    assert len(history.series("p", 2.0 * POINTS)) == 2 * POINTS  # a young chart: every sample
    for i in range(2 * POINTS, 7200):
        history.add("p", Sample(float(i), i % 7, float(i), 9.0 if i == 5000 else None))
    kept = history.series("p", 7200.0)
    assert len(kept) <= 2 * POINTS + 1 and kept[0].at >= 7200 - 3600
    assert max(s.queued for s in kept) == 6 and kept[-1].oldest == 7199.0
    assert [s.started for s in kept if s.started] == [9.0]  # a start inside a merged slot survives


def test_thin_keeps_the_peaks() -> None:
    """Thinning leaves at most POINTS points and keeps the highest value."""
    series = [(float(t), float((t * 37) % 101)) for t in range(1000)]
    out = thin(series, 0.0, 1000.0)
    assert len(out) <= POINTS and max(v for _, v in out) == 100.0
    assert [t for t, _ in out] == sorted(t for t, _ in out)


async def test_a_new_plan_moves_jobs_without_a_story() -> None:
    """Jobs the journal no longer keeps a story for still move bucket when a full plan decides anew."""
    h = make_harness(two_pools(journal_jobs=10))
    await h.sync()
    jobs = [h.queue() for _ in range(30)]
    await h.sync()
    idx = Indexes(h.scaler)
    await idx.catch_up()
    assert h.scaler.journal is not None
    held = [k for k in idx.jobs.keys("queued", None, 0, 100) if k not in h.scaler.journal.decisions]
    quiet = [k for k in held if h.scaler.journal.story(*k) is None]
    assert len(quiet) >= 10 and idx.jobs.in_bucket("held") == len(held)

    class Plan:  # a full plan (a new placement) that also gives the quiet ones to "small"
        assigned = (*h.scaler.journal.decisions.items(), *((k, "small") for k in quiet))
        placement = object()

    h.scaler.journal.planned(Plan())
    await idx.catch_up()
    assert idx.jobs.in_bucket("assigned", pool="small") == len(quiet) + 30 - len(held)
    assert idx.jobs.in_bucket("held") == len(held) - len(quiet)
    assert_same(idx, h)
    assert len(jobs) == 30
