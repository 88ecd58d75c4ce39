"""Traces the warm-pool policy has never seen, for ``benchmarks.simulate``.

* ``shifted``: the bitcoin trace moved by 3 days and 9 hours, so its busy
  hours and days fall elsewhere in the week (nothing may depend on when).
* ``office``: synthetic, seeded: a team working 08:00-18:00 on weekdays in
  UTC+9, runs arriving as a Poisson process whose rate follows the working
  day, each run of 1-8 jobs (mostly small; 15 % of them macOS), job times
  log-normal around 8 minutes; quiet nights and weekends.

``python -m benchmarks.traces office OUT.csv`` writes one.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from dataclasses import replace
from pathlib import Path

from scaler.trace.format import TraceJob, read_trace, write_trace

BITCOIN = Path(__file__).resolve().parents[2] / "shared" / "traces" / "bitcoin-core-2025-09-04_to_09-24.csv"
BITCOIN_BESIDE_WORKTREE = Path(__file__).resolve().parents[3] / "shared" / "traces" / BITCOIN.name
SHIFT = 3 * 86400 + 9 * 3600


def bitcoin_path() -> Path:
    for candidate in (BITCOIN, BITCOIN_BESIDE_WORKTREE):
        if candidate.exists():
            return candidate
    raise SystemExit(f"the bitcoin trace is not at {BITCOIN}")


def shifted() -> list[TraceJob]:
    return [
        replace(j, queued_at=j.queued_at + SHIFT, started_at=j.started_at + SHIFT, completed_at=j.completed_at + SHIFT)
        for j in read_trace(bitcoin_path())
    ]


def _rate(t: float) -> float:
    """Runs per hour at ``t``: weekdays 08:00-18:00 in UTC+9, a lunch dip."""
    local = t + 9 * 3600
    day = int((local // 86400 + 3) % 7)  # 0 = Monday
    hour = (local % 86400) / 3600
    if day >= 5:
        return 0.15  # someone pushes on a weekend now and then
    if not 8 <= hour < 18:
        return 0.1
    base = 6.0 * math.sin(math.pi * (hour - 8) / 10) ** 0.5
    return base * (0.5 if 12 <= hour < 13 else 1.0)


def office(seed: int = 14, days: int = 21, start: float = 1_757_894_400.0) -> list[TraceJob]:
    rng = random.Random(seed)  # a reproducible trace
    jobs: list[TraceJob] = []
    t, end, next_id = start, start + days * 86400, 1
    while t < end:
        t += rng.expovariate(1.0) * 3600 / 8.0  # thinning against a peak of 8 runs/h
        if rng.random() >= _rate(t) / 8.0:
            continue
        size = min(8, 1 + int(rng.expovariate(0.6)))
        labels = ("linux",) if rng.random() < 0.85 else ("macos",)
        for _ in range(size):
            run = rng.lognormvariate(math.log(480), 0.6)
            started = t + rng.uniform(5, 40)
            jobs.append(
                TraceJob(next_id, "acme/app", labels, round(t), round(started), round(started + run), "completed", "ci")
            )
            next_id += 1
    return jobs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("kind", choices=["office", "shifted"])
    p.add_argument("out")
    args = p.parse_args(argv)
    jobs = office() if args.kind == "office" else shifted()
    with open(args.out, "w", encoding="utf-8") as fh:
        n = write_trace(jobs, fh)
    print(f"{n} jobs -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
