"""The story of each job, for the operator UI: a bounded, in-memory journal.

Small hooks feed it: the store's job and instance changes, the reconciler's
plans and the webhook route (which also tells it about deliveries no pool
serves, which never reach the store). Like the store it is soft state (a
restart begins it afresh) and does no I/O; unlike the store nothing acts on
it. Bounded: at most ``max_jobs`` stories, the least recently touched
forgotten first, of at most ``max_entries`` entries each (the first kept,
the next oldest dropped); the trails of instances not yet tied to a job
likewise. Every text is scrubbed of known secrets when it is written.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from scaler.changes import Changes
from scaler.clock import Clock
from scaler.domain.instance import Instance, InstanceState
from scaler.domain.job import Job, JobState

if TYPE_CHECKING:
    from scaler.config import Config
    from scaler.reconciler import Reconciler
    from scaler.store import Store

Key = tuple[str, int]
S = InstanceState
MAX_TEXT = 500  # characters per entry, so the bound on entries bounds memory
_HELD = "held back: every pool that may serve it is at its max or a cap, unavailable, or in crash-loop backoff"


class _Plan(Protocol):
    """What the journal reads of a plan (``scaler.planner.Plan``)."""

    @property
    def assigned(self) -> tuple[tuple[Key, str], ...]: ...

    @property
    def placement(self) -> object: ...


@dataclass(frozen=True, slots=True)
class Entry:
    at: float
    kind: str  # webhook, queued, unserved, pool, held, instance, runner, created, online, started, ...
    text: str


@dataclass(slots=True)
class Story:
    """What happened to one job, as far as this scaler saw it."""

    forge: str
    job_id: int
    repository: str = ""
    labels: tuple[str, ...] = ()
    state: str = "queued"  # queued | in_progress | completed | unserved
    queued_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    pool: str | None = None  # the pool the last plan gave it to
    ran_on: str | None = None  # the pool of the instance it started on
    decided: bool = False  # a plan has looked at it
    instance: str | None = None
    runner_id: int | None = None
    runner_name: str | None = None
    why: str | None = None  # explain's answer when no pool serves it
    updated_at: float = 0.0
    entries: list[Entry] = field(default_factory=list)
    elided: int = 0  # entries dropped to stay within the bound

    @property
    def key(self) -> Key:
        return (self.forge, self.job_id)

    def wait(self, now: float) -> float | None:
        """Queued → started, or queued → now while it waits."""
        if self.queued_at is None:
            return None
        end = self.started_at if self.started_at is not None else (None if self.completed_at else now)
        return None if end is None else max(0.0, end - self.queued_at)


@dataclass(slots=True)
class _Trail:
    """An instance's entries until it is tied to a job, and after."""

    pool: str
    key: Key | None = None
    entries: list[Entry] = field(default_factory=list)


def seconds(value: float) -> str:
    """A duration for people: 0.4 s, 12 s, 3 m 05 s, 2 h 10 m."""
    if value < 10:
        return f"{value:.1f} s"
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{int(value // 60)} m {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} m"


class Journal:
    def __init__(
        self,
        clock: Clock,
        *,
        max_jobs: int = 2000,
        max_entries: int = 32,
        scrub: Callable[[str], str] = str,
    ) -> None:
        self.clock = clock
        self.max_jobs = max_jobs
        self.max_entries = max_entries
        self._scrub = scrub
        self._stories: OrderedDict[Key, Story] = OrderedDict()
        self._open: dict[Key, Story] = {}  # queued stories, for the plan hook
        self._trails: OrderedDict[str, _Trail] = OrderedDict()
        self._forge_of_pool: dict[str, str] = {}
        # job key -> pool, as the last plan gave them out (the UI reads it).
        self.decisions: dict[Key, str] = {}
        self._placement: object = None
        self._seen = 0
        self._waits: dict[str, float] = {}  # pool -> longest wait of a job started since take_waits()
        # Why no pool serves a job (None: one does); set by whoever wires the journal in.
        self.why: Callable[[Job], str | None] = lambda job: None
        # What changed, for the UI's indexes: jobs (stories and store records) and instances.
        self.job_changes: Changes[Key] = Changes()
        self.instance_changes: Changes[str] = Changes()

    # --- reading -----------------------------------------------------------

    def story(self, forge: str, job_id: int) -> Story | None:
        return self._stories.get((forge, job_id))

    def stories(self) -> Iterator[Story]:
        """Most recently touched first."""
        return reversed(self._stories.values())

    def __len__(self) -> int:
        return len(self._stories)

    def trail(self, instance: str) -> list[Entry]:
        found = self._trails.get(instance)
        return list(found.entries) if found else []

    def take_waits(self) -> dict[str, float]:
        """Per pool, the longest wait of the jobs started since the last call."""
        waits, self._waits = self._waits, {}
        return waits

    # --- wiring ------------------------------------------------------------

    def set_pools(self, forge_of_pool: dict[str, str]) -> None:
        self._forge_of_pool = dict(forge_of_pool)

    def new_store(self) -> None:
        """The scaler made its store afresh (a rebuild): every job and
        instance the UI knew may be gone."""
        self.job_changes.mark_all()
        self.instance_changes.mark_all()

    # --- the webhook route ---------------------------------------------------

    def delivery(self, job: Job, result: str, delivery_id: str | None) -> None:
        story = self._story(job.forge, job.id)
        self._facts(story, job)
        tail = f" · delivery {delivery_id[:64]}" if delivery_id else ""
        self._add(story, "webhook", f"{job.state} · {result.replace('_', ' ')}{tail}")

    def not_served(self, job: Job, why: str, delivery_id: str | None) -> None:
        """A delivery for a job no pool may serve: the route answers it and
        keeps nothing else, so this is all that is left of it."""
        self.delivery(job, "not_served", delivery_id)
        story = self._story(job.forge, job.id)
        if job.state is not JobState.QUEUED:  # another runner took it after all
            self._leave_queue(story, str(job.state))
            now = self.clock.now()
            if job.state is JobState.IN_PROGRESS:
                story.started_at = story.started_at or now
            else:
                story.completed_at = story.completed_at or now
        elif story.state in ("queued", "unserved"):
            story.queued_at = story.queued_at or self.clock.now()
            self._unserved(story, why)

    # --- store hooks -------------------------------------------------------

    def job_changed(self, old: Job | None, new: Job) -> None:
        """A job was first seen, or its state moved on."""
        story = self._story(new.forge, new.id)
        self._facts(story, new)
        if new.state is JobState.QUEUED:
            story.queued_at = story.queued_at or new.queued_at or self.clock.now()
            self._add(story, "queued", f"queued in {new.repository or '?'} for {', '.join(new.labels) or 'no labels'}")
            why = self.why(new)
            if why is None:
                story.state = "queued"
                self._open[story.key] = story
            else:
                self._unserved(story, why)
        elif new.state is JobState.IN_PROGRESS:
            self._started(story, new)
        else:
            self._leave_queue(story, "completed")
            story.completed_at = new.completed_at or self.clock.now()
            took = f" after {seconds(story.completed_at - story.started_at)}" if story.started_at else ""
            self._add(story, "completed", f"completed{took}")

    def job_forgotten(self, job: Job) -> None:
        """The store forgot a job (expired, or gone from the forge's queue):
        its story stays, but what the UI shows of it changes."""
        self.job_changes.mark(job.key)

    def instance_changed(self, old: Instance | None, new: Instance) -> None:
        """An instance was planned (or adopted), moved state, or had its record changed."""
        self.instance_changes.mark(new.name)
        trail = self._trails.get(new.name)
        if trail is None:
            trail = self._trails[new.name] = _Trail(new.pool)
            if len(self._trails) > self.max_jobs:
                self._trails.popitem(last=False)
        if trail.key is None and new.job_id is not None:
            self._tie(new.name, trail, (self._forge_of_pool.get(new.pool, ""), new.job_id))
        if trail.key is not None and new.runner_id is not None and (story := self._stories.get(trail.key)):
            story.runner_id = new.runner_id
        text = _instance_text(old, new, self.clock.now())
        if text is not None:
            self._trail_add(trail, *text)
        if new.state is S.DELETED:
            self._trails.pop(new.name, None)

    # --- reconciler hook ---------------------------------------------------

    def planned(self, plan: _Plan) -> None:
        """Record which pool each queued job was given to (or that none had room)."""
        assigned = plan.assigned
        if plan.placement is not None and plan.placement is self._placement and len(assigned) >= self._seen:
            for key, pool in assigned[self._seen :]:  # placed on top of the last plan: only the new ones
                self.decisions[key] = pool
                self.job_changes.mark(key)
                if (story := self._open.get(key)) is not None:
                    self._decided(story, pool)
        else:
            self.decisions = dict(assigned)  # a new dict: the UI's index diffs it with the one it last saw
            for story in list(self._open.values()):
                self._decided(story, self.decisions.get(story.key))
        self._placement, self._seen = plan.placement, len(assigned)

    # --- internals ---------------------------------------------------------

    def _story(self, forge: str, job_id: int) -> Story:
        key = (forge, job_id)
        self.job_changes.mark(key)
        story = self._stories.get(key)
        if story is None:
            story = self._stories[key] = Story(forge, job_id)
            if len(self._stories) > self.max_jobs:
                _, gone = self._stories.popitem(last=False)
                self._open.pop(gone.key, None)
                self.job_changes.mark(gone.key)
        else:
            self._stories.move_to_end(key)
        return story

    def _facts(self, story: Story, job: Job) -> None:
        story.repository = job.repository or story.repository
        story.labels = job.labels or story.labels
        story.runner_name = job.runner_name or story.runner_name

    def _add(self, story: Story, kind: str, text: str, at: float | None = None) -> None:
        at = self.clock.now() if at is None else at
        if len(story.entries) >= self.max_entries:
            del story.entries[1]  # keep how it began
            story.elided += 1
        story.entries.append(Entry(at, kind, self._text(text)))
        story.updated_at = max(story.updated_at, at)
        self.job_changes.mark(story.key)

    def _trail_add(self, trail: _Trail, kind: str, text: str) -> None:
        if trail.key is not None and (story := self._stories.get(trail.key)) is not None:
            self._stories.move_to_end(trail.key)
            self._add(story, kind, text)
            return
        if len(trail.entries) >= self.max_entries:
            del trail.entries[1]
        trail.entries.append(Entry(self.clock.now(), kind, self._text(text)))

    def _text(self, text: str) -> str:
        # Masked first (a secret cut in two would escape the mask), then cut:
        # an error text is the outside world's and may be any size.
        masked = self._scrub(text)
        return masked if len(masked) <= MAX_TEXT else masked[: MAX_TEXT - 1] + "…"

    def _tie(self, name: str, trail: _Trail, key: Key) -> None:
        """From now on the instance writes into this job's story; what it did
        before (made for min_idle, say) is copied in first."""
        trail.key = key
        story = self._story(*key)
        story.instance = name
        for entry in trail.entries:
            self._add(story, entry.kind, entry.text, entry.at)  # already masked and cut
        story.entries.sort(key=lambda e: e.at)
        trail.entries.clear()

    def _unserved(self, story: Story, why: str) -> None:
        why = self._text(why)
        self._open.pop(story.key, None)
        if story.why != why:
            self._add(story, "unserved", f"no pool serves it: {why}")
        story.state, story.why = "unserved", why

    def _decided(self, story: Story, pool: str | None) -> None:
        if pool is not None and pool != story.pool:
            self._add(story, "pool", f"given to pool {pool}")
        elif pool is None and (story.pool is not None or not story.decided):
            self._add(story, "held", _HELD)
        story.pool, story.decided = pool, True

    def _leave_queue(self, story: Story, state: str) -> None:
        self._open.pop(story.key, None)
        story.state = state

    def _started(self, story: Story, job: Job) -> None:
        self._leave_queue(story, "in_progress")
        story.started_at = job.started_at or self.clock.now()
        runner = job.runner_name
        trail = self._trails.get(runner) if runner else None
        if runner and trail is not None and trail.key != story.key:
            self._tie(runner, trail, story.key)
        wait = story.wait(story.started_at)
        waited = f" after waiting {seconds(wait)}" if wait is not None else ""
        self._add(story, "started", f"started on runner {runner or '?'}{waited}")
        pool = trail.pool if trail is not None else story.pool
        story.ran_on = pool
        if pool is not None and wait is not None:
            self._waits[pool] = max(self._waits.get(pool, 0.0), wait)


_ARRIVED = {
    S.CREATING: ("runner", "runner registered on the forge; creating the instance"),
    S.STARTING: ("created", "instance created; waiting for the runner to come online"),
    S.IDLE: ("online", "runner online"),
    S.BUSY: ("busy", "runner busy"),
    S.DONE: ("done", "instance done"),
    S.DELETING: ("teardown", "teardown: deregistering the runner, deleting the instance"),
    S.DELETED: ("torn-down", "torn down"),
    S.FAILED: ("failed", "instance failed"),
}


def _instance_text(old: Instance | None, new: Instance, now: float) -> tuple[str, str] | None:
    """The entry an instance change is worth, if any."""
    if old is None and new.state is not S.PENDING:  # found on the provider (after a restart), not planned
        return "instance", f"instance {new.name} of pool {new.pool} found on {new.provider} ({new.state}): adopted"
    if old is None:
        made_for = " for this job" if new.job_id is not None else " (free supply)"
        return "instance", f"instance {new.name} planned in pool {new.pool} on {new.provider}{made_for}"
    if new.state is not old.state and new.state in _ARRIVED:
        kind, text = _ARRIVED[new.state]
        if new.state is S.CREATING and new.runner_id is not None:
            text = f"runner {new.runner_id} registered on the forge; creating the instance"
        if new.state in (S.DONE, S.FAILED) and new.last_error:
            text = f"{text}: {new.last_error}"
        if new.state is S.DELETING and new.retire_reason:
            text = f"{text} ({new.retire_reason})"
        return kind, text
    if new.attempts > old.attempts and new.last_error:
        what = "teardown" if new.state is S.DELETING else "create"
        retry = f"; next try in {seconds(max(0.0, new.not_before - now))}" if new.not_before > now else ""
        return "error", f"{what} failed (attempt {new.attempts}): {new.last_error}{retry}"
    if new.retire_reason and new.retire_reason != old.retire_reason:
        return "retire", f"retiring: {new.retire_reason}"
    return None


def new_journal(config: Config, clock: Clock) -> Journal:
    from scaler.logging import _scrub  # the log redactor's masking, so the UI masks what logs mask

    ui = config.ui
    journal = Journal(clock, max_jobs=ui.journal_jobs, max_entries=ui.journal_entries, scrub=lambda t: str(_scrub(t)))
    journal.set_pools({p.name: p.forge for p in config.pools})
    return journal


def attach(journal: Journal, store: Store, reconciler: Reconciler) -> None:
    """Feed the journal from a (new) store and reconciler: after every
    rebuild the scaler makes both afresh, the journal carries on."""
    from scaler.explain import explain_job

    index, config = reconciler.index, reconciler.config
    store.observer = journal
    journal.new_store()
    reconciler.on_plan = journal.planned
    journal.why = lambda job: None if index.candidates(job) else explain_job(job, config)[1]


__all__ = ["Entry", "Journal", "Story", "attach", "new_journal", "seconds"]
