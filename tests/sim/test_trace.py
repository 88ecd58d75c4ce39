"""The trace CSV: the real trace reads, bad rows are named by line and column, nothing else escapes."""

from __future__ import annotations

import io
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.trace.format import COLUMNS, TraceError, TraceJob, parse_trace, write_trace
from tests.sim.conftest import job

HEADER = ",".join(COLUMNS)


def problems(text: str) -> list[str]:
    try:
        parse_trace(io.StringIO(text), "t.csv")
    except TraceError as exc:
        return exc.problems
    return []


def test_bitcoin_trace_reads(bitcoin: list[TraceJob]) -> None:
    """The shared three-week trace reads in full, sorted by arrival."""
    assert len(bitcoin) == 7671
    assert all(a.queued_at <= b.queued_at for a, b in itertools.pairwise(bitcoin))
    assert {j.labels for j in bitcoin} == {("linux",), ("macos",), ("windows",)}
    assert all(j.duration >= 0 for j in bitcoin)


def test_round_trip() -> None:
    """What write_trace writes, parse_trace reads back unchanged."""
    jobs = [job(2, 2000.5), job(1, 1000.0, labels=("a", "b"))]
    buf = io.StringIO()
    assert write_trace(jobs, buf) == 2
    assert parse_trace(io.StringIO(buf.getvalue())) == sorted(jobs, key=lambda j: j.queued_at)


def test_problems_name_line_and_column() -> None:
    """Each bad row is reported with its line and the column at fault."""
    text = "\n".join(
        [
            HEADER,
            "1,acme/app,linux,100,105,200,completed,ok",
            "x,acme/app,linux,100,105,200,completed,bad id",
            "3,noslash,linux,100,105,200,completed,bad repo",
            "4,acme/app,,100,105,200,completed,no labels",
            "5,acme/app,linux,1e30,105,200,completed,bad time",
            "6,acme/app,linux,100,205,200,completed,ends before it starts",
            "7,acme/app,linux,100,105,200,weird,bad status",
            "1,acme/app,linux,100,105,200,completed,duplicate",
            "8,acme/app,linux,100",
        ]
    )
    found = problems(text)
    assert [p.split(":")[1] for p in found] == ["3", "4", "5", "6", "7", "8", "9", "10"]
    for needle in ("job_id", "repository", "labels", "queued_at", "completed_at", "status", "appears twice", "fields"):
        assert any(needle in p for p in found), needle


def test_header_and_empty() -> None:
    """A missing column or an empty file is refused with what was expected."""
    assert "header lacks" in problems("job_id,repository\n1,a/b\n")[0]
    assert "empty file" in problems("")[0]
    assert "no jobs" in problems(HEADER + "\n")[0]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_hostile_text_only_ever_trace_error(text: str) -> None:
    """Whatever the file holds, reading it either works or raises TraceError."""
    try:
        jobs = parse_trace(io.StringIO(HEADER + "\n" + text))
    except TraceError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
    else:
        assert all(j.job_id > 0 and j.labels and j.duration >= 0 for j in jobs)
