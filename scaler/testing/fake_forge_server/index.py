"""Lookups for the fake forge's world, so no request scans every job or runner.

A load test keeps thousands of runners polling ``FetchTask`` and pages through
thousands of jobs; a scan or a sort per request made the fake the bottleneck
(the 5,000-job set-up took 225 s of its CPU). The world (``world.py``) keeps
these indexes as it moves jobs and runners; each lookup checks its answer
against ``jobs`` / ``runners``, so a test that edits those dicts directly gets
no stale record back.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator

from scaler.testing.fake_forge_server._base import FJob, FRunner


def key_of(item: FJob | FRunner) -> int:
    """The id it is filed under in ``jobs`` / ``runners`` (a test may change
    ``id`` afterwards to play a hostile forge)."""
    key: int = item.__dict__.get("_key", item.id)
    return key


class _ById:
    """Jobs of one status, kept in id order (what every listing sorts by)."""

    def __init__(self) -> None:
        self.jobs: dict[int, FJob] = {}
        self._ordered = True

    def add(self, job: FJob) -> None:
        key = key_of(job)
        if self.jobs and key < next(reversed(self.jobs)):
            self._ordered = False  # an older job came back (unblocked): sort on the next read
        self.jobs[key] = job

    def ordered(self) -> list[FJob]:
        return list(self.iterate())

    def iterate(self) -> Iterator[FJob]:
        if not self._ordered:
            self.jobs = dict(sorted(self.jobs.items()))
            self._ordered = True
        return iter(self.jobs.values())


class WorldIndex:
    def __init__(self) -> None:
        self.by_status: dict[str, _ById] = {}
        self.by_task: dict[int, FJob] = {}
        self.by_handle: dict[str, FJob] = {}
        self.by_run: dict[int, dict[int, FJob]] = {}
        self.owners: Counter[str] = Counter()  # jobs per repository owner
        self.repos: Counter[str] = Counter()  # jobs per repository
        self.by_uuid: dict[str, FRunner] = {}
        self.by_jit: dict[str, FRunner] = {}
        self.by_name: dict[str, dict[int, FRunner]] = {}

    # --- jobs -----------------------------------------------------------------------

    def add_job(self, job: FJob) -> None:
        object.__setattr__(job, "_key", job.id)
        object.__setattr__(job, "_index", self)  # its status changes reach status_changed
        self.by_status.setdefault(job.status, _ById()).add(job)
        self.by_handle[job.handle] = job
        self.by_run.setdefault(job.run_id, {})[key_of(job)] = job
        self.owners[job.repo.owner] += 1
        self.repos[job.repo.full_name] += 1

    def status_changed(self, job: FJob, before: str) -> None:
        old = self.by_status.get(before)
        if old is not None:
            old.jobs.pop(key_of(job), None)
        self.by_status.setdefault(job.status, _ById()).add(job)

    def task_given(self, job: FJob) -> None:
        if job.task_id is not None:
            self.by_task[job.task_id] = job

    def drop_job(self, job: FJob) -> None:
        job.__dict__.pop("_index", None)
        idx = self.by_status.get(job.status)
        if idx is not None:
            idx.jobs.pop(key_of(job), None)
        if job.task_id is not None:
            self.by_task.pop(job.task_id, None)
        self.by_handle.pop(job.handle, None)
        run = self.by_run.get(job.run_id, {})
        run.pop(key_of(job), None)
        if not run:
            self.by_run.pop(job.run_id, None)
        for counter, key in ((self.owners, job.repo.owner), (self.repos, job.repo.full_name)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def with_status(self, statuses: Iterable[str]) -> list[FJob]:
        """The jobs in any of ``statuses``, in id order."""
        lists = [self.by_status[s].ordered() for s in statuses if s in self.by_status]
        if len(lists) == 1:
            return lists[0]
        return list(heapq.merge(*lists, key=key_of))

    def waiting(self) -> Iterator[FJob]:
        """The waiting jobs, oldest first, lazily (a runner takes the first it matches)."""
        idx = self.by_status.get("waiting")
        return iter(()) if idx is None else idx.iterate()

    def all_in(self, scope: str) -> bool:
        """Whether every job there is belongs to ``scope`` (then a listing
        need not test each one)."""
        if scope.startswith("/repos/"):
            return set(self.repos) <= {scope[len("/repos/"):]}
        if scope.startswith("/orgs/"):
            return set(self.owners) <= {scope[len("/orgs/"):]}
        return True

    # --- runners ----------------------------------------------------------------------

    def add_runner(self, runner: FRunner) -> None:
        runner.__dict__.setdefault("_key", runner.id)
        self.by_uuid[runner.uuid] = runner
        self.by_name.setdefault(runner.name, {})[key_of(runner)] = runner
        if runner.jit:
            self.by_jit[runner.jit] = runner

    def drop_runner(self, runner: FRunner) -> None:
        self.by_uuid.pop(runner.uuid, None)
        if runner.jit:
            self.by_jit.pop(runner.jit, None)
        named = self.by_name.get(runner.name, {})
        named.pop(key_of(runner), None)
        if not named:
            self.by_name.pop(runner.name, None)


__all__ = ["WorldIndex", "key_of"]
