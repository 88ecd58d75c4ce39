"""Formatting for the pages: times, ages, and masking of secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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


def masked(text: Any) -> str:
    """A text for the page, with every known secret and credential shape masked."""
    return "" if text is None else str(_scrub(str(text)))
