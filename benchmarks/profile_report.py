"""Where the CPU goes: a py-spy ``--format raw`` profile (collapsed stacks) summarised.

Self time by function (top 25) and inclusive time by area (the library or
our module a frame belongs to; a sample counts once per area on its stack).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

AREAS = (
    ("httpcore", "httpcore"), ("httpx", "httpx"), ("h11", "h11"), ("anyio", "anyio"),
    ("uvicorn", "uvicorn"), ("starlette", "starlette"), ("structlog", "structlog"),
    ("logging", "/logging/"), ("json", "/json/"), ("orjson", "orjson"), ("pydantic", "pydantic"),
    ("prometheus", "prometheus_client"), ("importlib", "<frozen importlib"), ("ssl", "ssl.py"),
    ("asyncio", "/asyncio/"), ("tenacity", "tenacity"), ("scaler.forges", "scaler/forges/"),
    ("scaler.web", "scaler/web/"), ("scaler.testing", "scaler/testing/"), ("scaler", "scaler/"),
)


def _area(frame: str) -> str:
    return next((name for name, needle in AREAS if needle in frame), "other")


def summarise(path: str, top: int = 25) -> dict[str, Any]:
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = stack.split(";")
            own[re.sub(r":\d+\)", ")", frames[-1])] += n
            for area in {_area(f) for f in frames}:
                areas[area] += n
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self_top": [(f, round(100 * n / total, 1)) for f, n in own.most_common(top)],
        "inclusive_by_area": {a: round(100 * n / total, 1) for a, n in areas.most_common()},
    }
