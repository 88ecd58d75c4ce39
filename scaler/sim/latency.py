"""Provider start latency for a replay: fixed, or log-normal from a median and a p95.

``60s`` is a fixed latency; ``median=40s,p95=90s`` draws each start from the
log-normal distribution with that median and 95th percentile, from a seeded
generator, so a replay is the same every time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from scaler.durations import format_duration, parse_duration

_Z95 = 1.6448536269514722  # the standard normal's 95th percentile


@dataclass(frozen=True, slots=True)
class Latency:
    median: float
    p95: float | None = None  # None: fixed at ``median``

    def sampler(self, seed: int = 0) -> Callable[[], float]:
        if self.p95 is None:
            fixed = self.median
            return lambda: fixed
        rng = random.Random(seed)  # noqa: S311 - a reproducible replay, not crypto
        mu = math.log(self.median)
        sigma = math.log(self.p95 / self.median) / _Z95
        return lambda: math.exp(rng.gauss(mu, sigma))

    def describe(self) -> str:
        if self.p95 is None:
            return format_duration(self.median)
        return f"median={format_duration(self.median)},p95={format_duration(self.p95)}"


def parse_fixed(text: str) -> Latency:
    try:
        return Latency(parse_duration(text))
    except ValueError as exc:
        raise ValueError(f"--provider-start: {exc}") from None


def parse_distribution(text: str) -> Latency:
    """``median=40s,p95=90s`` (both needed; p95 above the median)."""
    parts: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in ("median", "p95"):
            raise ValueError(f"--provider-start-dist: expected median=DURATION,p95=DURATION (got {text!r})")
        if key in parts:
            raise ValueError(f"--provider-start-dist: {key} given twice")
        try:
            parts[key] = parse_duration(value.strip())
        except ValueError as exc:
            raise ValueError(f"--provider-start-dist: {key}: {exc}") from None
    if set(parts) != {"median", "p95"}:
        raise ValueError("--provider-start-dist: give both median= and p95=")
    if parts["median"] <= 0:
        raise ValueError("--provider-start-dist: median must be above zero")
    if parts["p95"] <= parts["median"]:
        raise ValueError("--provider-start-dist: p95 must be above the median")
    return Latency(parts["median"], parts["p95"])
