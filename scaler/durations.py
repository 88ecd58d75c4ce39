"""Durations written as ``30s``, ``5m``, ``6h``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds from a duration string (or a plain number of seconds)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 5m or 6h (got {value!r})")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must not be negative (got {value})")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 5m or 6h (got {value!r})")
    text = value.strip().lower()
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ValueError(f"expected a duration like 30s, 5m or 6h (got {value!r})")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
