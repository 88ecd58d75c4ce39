"""The UI's indexes of jobs and instances, kept sorted and counted as things
change, so a page refresh costs the rows it shows, not every job.

The journal marks what changed (:class:`scaler.changes.Changes`: a job's
story or store record, an instance, and the last plan's decisions, diffed
here). Before a page or the sampler reads, :meth:`Indexes.catch_up` redoes
those keys only, a slice at a time (:mod:`scaler.web.ui.slices`), one
catch-up at a time shared by every open tab. Rows are
then read by position from sorted shelves and counts from tallies."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, KeysView, Sequence
from typing import Any, Generic, TypeVar

from sortedcontainers import SortedList

from scaler.app import Scaler
from scaler.domain.instance import InstanceState
from scaler.domain.job import Job, JobState
from scaler.explain import explain_job
from scaler.journal import Journal, Key, Story
from scaler.web.ui.slices import sliced

S = InstanceState
K = TypeVar("K", bound=Hashable)
Order = tuple[Any, ...]  # a sort key; its last part is the item's own key
Scope = tuple[str, str] | None  # ("pool", name), ("forge", name), or None: everything
EXPLAINED_MAX = 1000  # explain's answers kept (by forge, repository, labels: outside input)

# Where a job stands for the jobs page (its "bucket"), the filters each
# bucket belongs to, and the order of the groups on "every job".
WAITING_BUCKETS = ("assigned", "held", "unserved")
FILTERS_OF = {
    "assigned": ("waiting", "queued"),
    "held": ("waiting", "queued"),
    "unserved": ("waiting", "unserved"),
    "in_progress": ("in_progress",),
    "completed": ("completed",),
    "gone": ("gone",),
}
EVERY = ("waiting", "in_progress", "completed", "gone")
_GROUP = {"in_progress": 1, "completed": 2, "gone": 3}
# The order instance states are shown in: what needs a look first.
STATE_ORDER = (S.FAILED, S.PENDING, S.CREATING, S.STARTING, S.IDLE, S.BUSY, S.DONE, S.DELETING)
STATE_VALUES = tuple(s.value for s in STATE_ORDER)
_RANK = {s: i for i, s in enumerate(STATE_ORDER)}


class Shelves(Generic[K]):
    """Items, each on a few sorted shelves (one per filter it matches, per
    scope) and counted in a few tallies; putting an item again moves it."""

    def __init__(self) -> None:
        self._shelves: dict[Hashable, SortedList[Order]] = {}
        self._items: dict[K, tuple[Order, tuple[Hashable, ...], tuple[Hashable, ...]]] = {}
        self._tally: Counter[Hashable] = Counter()

    def put(self, key: K, order: Order, shelves: tuple[Hashable, ...], tallies: tuple[Hashable, ...]) -> None:
        entry = (order, shelves, tallies)
        old = self._items.get(key)
        if old == entry:
            return
        if old is not None:
            self._take(old)
        self._items[key] = entry
        for shelf in shelves:
            found = self._shelves.get(shelf)
            if found is None:
                found = self._shelves[shelf] = SortedList()
            found.add(order)
        self._tally.update(tallies)

    def drop(self, key: K) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._take(old)

    def _take(self, entry: tuple[Order, tuple[Hashable, ...], tuple[Hashable, ...]]) -> None:
        order, shelves, tallies = entry
        for shelf in shelves:
            self._shelves[shelf].remove(order)
        for t in tallies:
            self._tally[t] -= 1
            if not self._tally[t]:
                del self._tally[t]

    def clear(self) -> None:
        self._shelves, self._items, self._tally = {}, {}, Counter()

    def count(self, shelf: Hashable) -> int:
        found = self._shelves.get(shelf)
        return len(found) if found is not None else 0

    def tally(self, name: Hashable) -> int:
        return self._tally.get(name, 0)

    def first(self, shelf: Hashable) -> Order | None:
        found = self._shelves.get(shelf)
        return found[0] if found else None

    def page(self, shelves: Sequence[Hashable], offset: int, limit: int) -> list[Order]:
        """Items ``offset`` to ``offset + limit`` of the shelves one after the other."""
        out: list[Order] = []
        for shelf in shelves:
            found = self._shelves.get(shelf)
            n = len(found) if found is not None else 0
            if found is None or offset >= n:
                offset -= n
                continue
            out += found.islice(offset, offset + limit - len(out))
            offset = 0
            if len(out) >= limit:
                break
        return out

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> KeysView[K]:
        return self._items.keys()

    def __contains__(self, key: object) -> bool:
        return key in self._items


def job_state(story: Story | None, job: Job | None) -> str:
    """queued, in_progress, completed, unserved (a delivery no pool serves),
    or gone (seen queued, then forgotten by the store: it left the queue)."""
    if job is not None:
        return str(job.state)
    assert story is not None
    if story.state == "queued" and any(e.kind == "queued" for e in story.entries):
        return "gone"
    return story.state


def job_of(story: Story | None, job: Job | None, key: Key) -> Job:
    if job is not None:
        return job
    assert story is not None
    return Job(key[0], key[1], story.repository, story.labels, JobState.QUEUED)


def last_news(story: Story | None, job: Job | None) -> float | None:
    news = (
        story.updated_at if story else None,
        (story.queued_at if story else None) or (job.queued_at if job else None),
        (job.started_at if job else None) or (story.started_at if story else None),
        (job.completed_at if job else None) or (story.completed_at if story else None),
    )
    return max((t for t in news if t), default=None)


class JobIndex:
    """Every job the jobs page knows (the journal's stories, the store's
    queued and running jobs) by bucket, pool and forge."""

    def __init__(self, scaler: Scaler, journal: Journal) -> None:
        self.scaler, self.journal = scaler, journal
        self.shelves: Shelves[Key] = Shelves()
        self._decisions: dict[Key, str] = {}

    def changed(self) -> Iterable[Key]:
        """What to redo: the marked keys and the decisions that moved, or
        (from scratch) every known job."""
        marked = self.journal.job_changes.take()
        decisions, seen = self.journal.decisions, self._decisions
        self._decisions = decisions
        if marked is None:  # every job known, and those the index holds (redo drops the gone)
            store = self.scaler.store
            stories = [s.key for s in self.journal.stories()]
            return unique(list(self.shelves.keys()), stories, list(store.queued_seen), list(store.in_progress))
        if decisions is not seen:  # a full plan: only the jobs whose pool changed
            marked |= {key for key, _ in decisions.items() ^ seen.items()}
        return marked

    def redo(self, key: Key) -> None:
        store = self.scaler.store
        story = self.journal.story(*key)
        if story is None and key not in store.queued_seen and key not in store.in_progress:
            self.shelves.drop(key)
            return
        job = store.jobs.get(key)
        bucket, pool = self.where(key, story, job)
        if bucket in WAITING_BUCKETS:
            queued_at = (story.queued_at if story else None) or (job.queued_at if job else None)
            order: Order = (0, queued_at if queued_at is not None else float("inf"), *key)
        else:
            order = (_GROUP[bucket], -(last_news(story, job) or 0.0), *key)
        scopes: tuple[Scope, ...] = (None, ("pool", pool)) if pool else (None,)
        shelves = tuple((scope, f) for scope in scopes for f in FILTERS_OF[bucket])
        tallies = (*((scope, bucket) for scope in scopes), (("forge", key[0]), bucket))
        self.shelves.put(key, order, shelves, tallies)

    def where(self, key: Key, story: Story | None, job: Job | None) -> tuple[str, str | None]:
        """(bucket, pool): the pool the last plan gave it to, the pool it ran
        on, or, held back, the first that may serve it."""
        state = job_state(story, job)
        if state in ("in_progress", "completed"):
            runner = (job.runner_name if job else None) or (story.runner_name if story else None)
            inst = self.scaler.store.instances.get(runner or "")
            pool = (story.ran_on if story else None) or (inst.pool if inst else None) or (story.pool if story else None)
            return state, pool
        if state == "gone":
            return "gone", None
        candidates = self.scaler.reconciler.index.candidates(job_of(story, job, key))
        if not candidates:
            return "unserved", None
        pool = self.journal.decisions.get(key)
        return ("assigned", pool) if pool is not None else ("held", candidates[0].name)

    # --- reading -------------------------------------------------------------

    def keys(self, state: str | None, pool: str | None, offset: int, limit: int) -> list[Key]:
        scope: Scope = ("pool", pool) if pool else None
        shelves = [(scope, f) for f in EVERY] if not state else [(scope, state)]
        return [(o[-2], o[-1]) for o in self.shelves.page(shelves, offset, limit)]

    def count(self, state: str | None, pool: str | None = None) -> int:
        scope: Scope = ("pool", pool) if pool else None
        return sum(self.shelves.count((scope, f)) for f in ((state,) if state else EVERY))

    def in_bucket(self, bucket: str, pool: str | None = None, forge: str | None = None) -> int:
        scope: Scope = ("pool", pool) if pool else ("forge", forge) if forge else None
        return self.shelves.tally((scope, bucket))

    def oldest_queued_at(self, pool: str | None = None) -> float | None:
        """When the longest-waiting job that some pool may serve was queued."""
        first = self.shelves.first((("pool", pool) if pool else None, "queued"))
        return first[1] if first is not None and first[1] != float("inf") else None


class InstanceIndex:
    """Every instance by state and pool: failed first, then oldest first."""

    def __init__(self, scaler: Scaler, journal: Journal) -> None:
        self.scaler, self.journal = scaler, journal
        self.shelves: Shelves[str] = Shelves()

    def changed(self) -> Iterable[str]:
        marked = self.journal.instance_changes.take()
        instances = self.scaler.store.instances
        if marked is None or len(self.shelves) + len(marked) < len(instances):
            # Every one: from scratch, or some instance came in by a path that told nobody.
            return unique(list(instances), list(self.shelves.keys()))
        return marked

    def redo(self, name: str) -> None:
        inst = self.scaler.store.instances.get(name)
        if inst is None:
            self.shelves.drop(name)
            return
        state = str(inst.state)
        scopes: tuple[Scope, ...] = (None, ("pool", inst.pool))
        live = inst.state is not S.FAILED or inst.provisioned  # what counts against max, as the planner counts
        tallies = (
            *((scope, state) for scope in scopes),
            ("provider", inst.provider),
            *((("live", inst.pool),) if live else ()),
        )
        order = (_RANK.get(inst.state, 99), inst.created_at, name)
        self.shelves.put(name, order, tuple((scope, state) for scope in scopes), tallies)

    def names(self, state: str | None, pool: str | None, offset: int, limit: int) -> list[str]:
        scope: Scope = ("pool", pool) if pool else None
        states = [state] if state else STATE_VALUES
        return [o[-1] for o in self.shelves.page([(scope, s) for s in states], offset, limit)]

    def count(self, state: str | None = None, pool: str | None = None) -> int:
        if state is None and pool is None:
            return len(self.shelves)
        scope: Scope = ("pool", pool) if pool else None
        return sum(self.shelves.tally((scope, s)) for s in ((state,) if state else STATE_VALUES))

    def live(self, pool: str) -> int:
        return self.shelves.tally(("live", pool))

    def of_provider(self, provider: str) -> int:
        return self.shelves.tally(("provider", provider))


class Indexes:
    """Both indexes and their shared, sliced catch-up; and explain's answers,
    which depend on the config alone (a few ms each at 200 pools)."""

    def __init__(self, scaler: Scaler) -> None:
        journal = scaler.journal
        assert journal is not None, "the UI runs with the journal"
        self.scaler, self.journal = scaler, journal
        self.jobs = JobIndex(scaler, journal)
        self.instances = InstanceIndex(scaler, journal)
        self._task: asyncio.Task[None] | None = None
        self._explained: dict[tuple[str, str, tuple[str, ...]], str] = {}

    def explain(self, job: Job) -> str:
        """``runner-scaler explain``'s answer for a job like this one."""
        key = (job.forge, job.repository, job.labels)
        found = self._explained.get(key)
        if found is None:
            if len(self._explained) >= EXPLAINED_MAX:
                self._explained.clear()
            found = self._explained[key] = explain_job(job, self.scaler.config)[1]
        return found

    async def catch_up(self) -> None:
        """Redo what changed since the last catch-up (or await the one under
        way): afterwards the indexes hold at least what the store and
        journal held when it began."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._catch_up(), name="ui-index")
        await asyncio.shield(self._task)  # a tab that goes away does not stop it for the others

    async def _catch_up(self) -> None:
        try:
            await sliced(self.instances.changed(), self.instances.redo)
            await sliced(self.jobs.changed(), self.jobs.redo)
        except BaseException:
            self.journal.job_changes.mark_all()  # half done: the next one starts afresh
            self.journal.instance_changes.mark_all()
            raise


def unique(*lists: list[K]) -> Iterator[K]:
    """Each key once. (The lists are copies, cheap to take all at once; the
    hashing happens as the caller iterates, in its slices.)"""
    seen: set[K] = set()
    for keys in lists:
        for key in keys:
            if key not in seen:
                seen.add(key)
                yield key


__all__ = [
    "STATE_ORDER",
    "STATE_VALUES",
    "Indexes",
    "InstanceIndex",
    "JobIndex",
    "Shelves",
    "job_of",
    "job_state",
    "last_news",
]
