"""The job-trace CSV: one job a line, header first (``shared/traces/README.md``).

``job_id, repository, labels, queued_at, started_at, completed_at, status, name``;
labels are ``;``-separated, times are seconds since the epoch (UTC). A replay
uses ``queued_at`` as the arrival and ``completed_at - started_at`` as the
time the job holds its runner.

A trace comes from outside: every row is checked and every problem is
reported with its line and column, at most :data:`MAX_PROBLEMS` of them.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from scaler.errors import PermanentError

COLUMNS = ("job_id", "repository", "labels", "queued_at", "started_at", "completed_at", "status", "name")
STATUSES = frozenset({"completed", "failed", "aborted"})
MAX_ROWS = 5_000_000
MAX_FIELD = 4096
MAX_PROBLEMS = 20
_REPO = re.compile(r"^[^/\s]+/[^/\s]+$")
# 1970 .. 2200: anything else is not seconds since the epoch (milliseconds, a typo).
_EARLIEST, _LATEST = 0.0, 7_258_118_400.0


class TraceError(PermanentError):
    """The trace cannot be read; ``problems`` names each line and column."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid trace:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class TraceJob:
    job_id: int
    repository: str
    labels: tuple[str, ...]
    queued_at: float
    started_at: float
    completed_at: float
    status: str = "completed"
    name: str = ""

    @property
    def duration(self) -> float:
        """How long the job holds its runner."""
        return self.completed_at - self.started_at


def _time(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{column}: not a number of seconds ({text[:40]!r})") from None
    if not math.isfinite(value) or not _EARLIEST <= value <= _LATEST:
        raise ValueError(f"{column}: {text[:40]!r} is not seconds since the epoch (1970..2200)")
    return value


def _row(fields: dict[str, str]) -> TraceJob:
    raw_id = fields["job_id"].strip()
    if not raw_id.isdigit() or not 0 < int(raw_id) < 1 << 63:
        raise ValueError(f"job_id: must be a positive 64-bit integer (got {raw_id[:40]!r})")
    repo = fields["repository"].strip()
    if not _REPO.match(repo):
        raise ValueError(f"repository: must be owner/repo (got {repo[:60]!r})")
    labels = tuple(x.strip() for x in fields["labels"].split(";") if x.strip())
    if not labels:
        raise ValueError("labels: at least one label is needed")
    queued = _time(fields["queued_at"].strip(), "queued_at")
    started = _time(fields["started_at"].strip(), "started_at")
    completed = _time(fields["completed_at"].strip(), "completed_at")
    if completed < started:
        raise ValueError(f"completed_at: before started_at ({completed:g} < {started:g})")
    status = fields["status"].strip().lower()
    if status not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(sorted(STATUSES))} (got {status[:20]!r})")
    return TraceJob(int(raw_id), repo, labels, queued, started, completed, status, fields["name"])


def parse_trace(text: Iterable[str], source: str = "trace") -> list[TraceJob]:
    """Rows of a trace, sorted by ``queued_at`` (stable); TraceError lists the problems."""
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(iter(text))
    problems: list[str] = []
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise TraceError([f"{source}: empty file (expected the header {','.join(COLUMNS)})"]) from None
    except csv.Error as exc:
        raise TraceError([f"{source}:1: {exc}"]) from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise TraceError([f"{source}:1: header lacks {', '.join(missing)} (expected {','.join(COLUMNS)})"])
    where = {c: header.index(c) for c in COLUMNS}
    jobs: list[TraceJob] = []
    seen: set[int] = set()
    try:
        for line, record in enumerate(reader, start=2):
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if len(jobs) >= MAX_ROWS:
                problems.append(f"{source}:{line}: more than {MAX_ROWS} rows")
                break
            if len(record) != len(header):
                problems.append(f"{source}:{line}: {len(record)} fields, the header has {len(header)}")
            else:
                try:
                    job = _row({c: record[i] for c, i in where.items()})
                except ValueError as exc:
                    problems.append(f"{source}:{line}: {exc}")
                else:
                    if job.job_id in seen:
                        problems.append(f"{source}:{line}: job_id: {job.job_id} appears twice")
                    seen.add(job.job_id)
                    jobs.append(job)
            if len(problems) >= MAX_PROBLEMS:
                problems.append(f"{source}: stopped after {MAX_PROBLEMS} problems")
                break
    except csv.Error as exc:
        problems.append(f"{source}:{reader.line_num}: {exc}")
    if problems:
        raise TraceError(problems)
    if not jobs:
        raise TraceError([f"{source}: no jobs after the header"])
    jobs.sort(key=lambda j: j.queued_at)
    return jobs


def read_trace(path: str | Path) -> list[TraceJob]:
    p = Path(path)
    try:
        with p.open(encoding="utf-8", newline="") as fh:
            return parse_trace(fh, str(p))
    except OSError as exc:
        raise TraceError([f"{p}: cannot read ({exc.strerror})"]) from None
    except UnicodeDecodeError:
        raise TraceError([f"{p}: not UTF-8 text"]) from None


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"


def write_trace(jobs: Iterable[TraceJob], out: IO[str]) -> int:
    """Write the header and the rows (sorted by ``queued_at``); returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    n = 0
    for j in sorted(jobs, key=lambda j: (j.queued_at, j.job_id)):
        writer.writerow(
            [
                j.job_id,
                j.repository,
                ";".join(j.labels),
                _num(j.queued_at),
                _num(j.started_at),
                _num(j.completed_at),
                j.status,
                j.name,
            ]
        )
        n += 1
    return n


def window(jobs: Iterable[TraceJob], start: float | None, end: float | None) -> Iterator[TraceJob]:
    """Jobs that arrive in ``[start, end)`` (either bound may be open)."""
    for j in jobs:
        if (start is None or j.queued_at >= start) and (end is None or j.queued_at < end):
            yield j


def to_text(jobs: Iterable[TraceJob]) -> str:
    buf = io.StringIO()
    write_trace(jobs, buf)
    return buf.getvalue()
