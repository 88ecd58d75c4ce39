"""Formatting for the pages: times, ages, and masking of secrets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from scaler.journal import seconds
from scaler.logging import _scrub  # the log redactor's masking: the pages mask what the logs mask


def clock_time(at: float | None, now: float) -> str:
    """UTC wall time; with the date when it is not today."""
    if at is None:
        return ""
    when = datetime.fromtimestamp(at, UTC)
    if datetime.fromtimestamp(now, UTC).date() != when.date():
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return when.strftime("%H:%M:%S")


def iso(at: float | None) -> str:
    return "" if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


def age(at: float | None, now: float) -> str:
    return "" if at is None else seconds(max(0.0, now - at))


def masked(text: Any) -> str:
    """A text for the page, with every known secret and credential shape masked."""
    return "" if text is None else str(_scrub(str(text)))
