"""The per-job journal behind the UI's stories, driven through the real core
with the fake forge, the in-memory provider and an injected clock."""

from __future__ import annotations

from typing import Any

from scaler.clock import FakeClock
from scaler.domain.job import Job, JobState
from scaler.errors import ProviderTemporaryError
from scaler.journal import Journal
from scaler.secrets import Secret
from tests.conftest import Harness, base_config, make_harness


def kinds(h: Harness, job_id: int) -> list[str]:
    assert h.scaler.journal is not None
    story = h.scaler.journal.story("fake", job_id)
    assert story is not None
    return [e.kind for e in story.entries]


def pools(**pool: Any) -> dict[str, Any]:
    data = base_config()
    data["pools"][0].update(pool)
    return data


async def test_story_from_queued_to_torn_down(harness: Harness) -> None:
    """A job's story runs queued → pool → instance → runner → created → online → started → completed → torn down."""
    await harness.sync()  # the provider listed: creates may begin
    job = harness.queue()
    await harness.sync()
    name = harness.instance_for(job)
    harness.clock.advance(3)
    harness.run_job(job, name)
    await harness.sync()
    assert kinds(harness, job) == [
        "queued", "pool", "instance", "runner", "created", "online", "started", "busy", "completed", "done",
        "teardown", "torn-down",
    ]  # fmt: skip
    assert harness.scaler.journal is not None
    story = harness.scaler.journal.story("fake", job)
    assert story is not None
    assert (story.state, story.pool, story.instance) == ("completed", "small", name)
    assert story.runner_id is not None and story.runner_id in harness.forge.deregistered
    assert story.wait(harness.clock.now()) == 3.0
    assert harness.scaler.journal.take_waits() == {"small": 3.0}
    assert harness.scaler.journal.take_waits() == {}


async def test_free_instance_trail_joins_the_story() -> None:
    """An instance made for min_idle writes its past into the story of the job it takes."""
    h = make_harness(pools(min_idle=1))
    await h.sync()
    free = next(iter(h.scaler.store.instances))
    h.clock.advance(1)
    job = h.queue()
    await h.scaler.settle()
    h.deliver(*h.forge.start_job(job, free))
    await h.scaler.settle()
    got = kinds(h, job)
    assert got[:3] == ["instance", "runner", "created"]  # before it was queued: sorted by time
    assert got.index("queued") < got.index("started")
    assert h.scaler.journal is not None
    assert h.scaler.journal.story("fake", job).instance == free  # type: ignore[union-attr]
    assert h.scaler.journal.trail(free) == []  # everything went into the story


async def test_held_back_then_given_to_the_pool() -> None:
    """A job no pool has room for is held back, and given to the pool once room frees up."""
    h = make_harness(pools(max=1))
    await h.sync()
    first, second = h.queue(), h.queue()
    await h.sync()
    assert "held" in kinds(h, second) and "pool" not in kinds(h, second)
    h.run_job(first, h.instance_for(first))
    await h.sync()
    await h.sync()
    assert kinds(h, second).index("held") < kinds(h, second).index("pool")
    assert h.scaler.journal is not None and h.scaler.journal.decisions.get(("fake", second)) == "small"


async def test_unserved_job_from_the_queue_listing_says_why() -> None:
    """A queued job no pool may serve (seen in the forge's listing) is unserved, with explain's reason."""
    h = make_harness()
    job_id, _, _ = h.forge.queue_job("elsewhere/app", ["ubuntu-latest"])
    await h.sync()
    assert h.scaler.journal is not None
    story = h.scaler.journal.story("fake", job_id)
    assert story is not None and story.state == "unserved"
    assert story.why is not None and story.why.startswith("repository not allowed: elsewhere/app")
    assert ("fake", job_id) not in h.scaler.journal._open


async def test_launch_failure_is_told_and_secrets_masked() -> None:
    """A failed create is in the story with its attempt and back-off; a secret in its text is masked."""
    h = make_harness()
    await h.sync()
    leaked = Secret("canary-token-in-an-error-91f3")
    h.provider.fail_next_create(ProviderTemporaryError(f"quota exceeded for {leaked.reveal()}"))
    job = h.queue()
    await h.scaler.settle()
    assert h.scaler.journal is not None
    story = h.scaler.journal.story("fake", job)
    assert story is not None
    errors = [e.text for e in story.entries if e.kind == "error"]
    assert errors and errors[0].startswith("create failed (attempt 1): quota exceeded for [REDACTED]")
    assert "next try in" in errors[0]
    assert all(leaked.reveal() not in e.text for e in story.entries)


def job(n: int, state: JobState = JobState.QUEUED) -> Job:
    return Job("f", n, "acme/app", ("x",), state, queued_at=1.0)


def test_bounded_stories_and_entries() -> None:
    """At most max_jobs stories (least recently touched forgotten) of at most max_entries entries (the first kept)."""
    journal = Journal(FakeClock(), max_jobs=10, max_entries=8)
    for n in range(25):
        journal.job_changed(None, job(n))
    assert len(journal) == 10
    assert journal.story("f", 0) is None and journal.story("f", 24) is not None
    assert len(journal._open) == 10
    for i in range(20):
        journal.delivery(job(24), "duplicate", f"d{i}")
    story = journal.story("f", 24)
    assert story is not None and len(story.entries) == 8 and story.elided == 13
    assert story.entries[0].kind == "queued" and story.entries[-1].text.endswith("d19")


def test_not_served_delivery_kept_and_followed() -> None:
    """A delivery no pool serves starts an unserved story; a later report that another runner took it moves it on."""
    clock = FakeClock()
    journal = Journal(clock)
    journal.not_served(job(7), "no label match: job wants ['x']", "abc")
    story = journal.story("f", 7)
    assert story is not None and (story.state, story.why) == ("unserved", "no label match: job wants ['x']")
    assert [e.kind for e in story.entries] == ["webhook", "unserved"]
    clock.advance(5)
    journal.not_served(job(7, JobState.IN_PROGRESS), "no label match: job wants ['x']", "abd")
    assert story.state == "in_progress" and story.started_at == clock.now()


def test_journal_off_with_the_ui() -> None:
    """ui.enabled: false attaches no journal: the store and reconciler carry no hooks."""
    h = make_harness({**base_config(), "ui": {"enabled": False}})
    assert h.scaler.journal is None
    assert h.scaler.store.observer is None and h.scaler.reconciler.on_plan is None


def test_entry_text_is_cut() -> None:
    """An outside text of any size is cut, so the bounds on entries bound memory."""
    journal = Journal(FakeClock())
    journal.not_served(job(1), "x" * 100_000, "d")
    story = journal.story("f", 1)
    assert story is not None and all(len(e.text) <= 500 for e in story.entries)
    assert story.entries[-1].text.endswith("…")
