"""Formatting for the pages: times, ages, and masking of secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from scaler.journal import seconds
from scaler.logging import _scrub  # the log redactor's masking: the pages mask what the logs mask


def clock_time(at: float | None, now: float, *, precise: bool = False) -> str:
    """UTC wall time (``precise``: to the millisecond); with the date when it is not today."""
    if at is None:
        return ""
    when = datetime.fromtimestamp(at, UTC)
    text = when.strftime("%H:%M:%S") + (f".{when.microsecond // 1000:03d}" if precise else "")
    if datetime.fromtimestamp(now, UTC).date() != when.date():
        return f"{when:%Y-%m-%d} {text}"
    return text


def iso(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def age(at: float | None, now: float) -> str:
    return "" if at is None else seconds(max(0.0, now - at))


def job_link(forge: str, job_id: int) -> str:
    return f"/ui/jobs/{quote(forge, safe='')}/{job_id}"


def masked(text: Any) -> str:
    """A text for the page, with every known secret and credential shape masked."""
    return "" if text is None else str(_scrub(str(text)))


class Pager:
    """Which rows a page shows: page ``number`` (from 1, kept in range) of
    ``limit`` rows out of ``total``."""

    __slots__ = ("first", "last", "number", "offset", "pages", "total")

    def __init__(self, number: int, limit: int, total: int) -> None:
        self.pages = max(1, -(-total // limit))
        self.number = min(max(1, number), self.pages)
        self.offset = (self.number - 1) * limit
        self.total = total
        self.first = min(total, self.offset + 1)
        self.last = min(total, self.offset + limit)
