"""How many idle runners a pool holds for its wait target (pure arithmetic).

A job finds a runner in time when one is idle, or when one was created at
least ``start - target_wait`` before it arrived. Every job that takes an idle
runner gets a replacement at once, so a pool holding ``N`` idle serves a job
in time unless it is at position ``> N`` among the jobs that arrived within
``H = start - target_wait`` before it (its batch-mates included).

The ``m``-th idle runner is needed with probability ``s(m-1)`` per batch
(``s`` the share of batches with more than ``m-1`` jobs), so it is worth
``rate * s(m-1)`` jobs per second, and the pool holds every runner worth at
least a cut-off. The cut-off is calibrated on the pool's recent history: each
job there is scored with what its runner would have been worth when it
arrived (the forecast made then, not one that has learned from it), and the
cut-off is the ``1 - quantile`` share of those scores (job weighted), so that
the target would have held for ``quantile`` of recent jobs while idle runners
are spent where they serve the most jobs. Arrivals that are rare now (a quiet
night) are left to start on demand; busy hours, and days busier than usual,
hold more. What the model does not see (a runner that came up late, a run
that grew after its first job) is corrected by the waits the pool's jobs
really had (:func:`feedback`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaler.warm.forecast import BATCH_GAP, ArrivalModel, how

STEP = 60.0  # targets are recomputed on this grid (and at every arrival)
MIN_BATCHES = 3  # below this, the pool is still learning
LEARN = 86400.0  # forecasts made with less watched time are not scored
FEEDBACK_RATE = 0.1  # log-gain moved by one late job (times 1 - quantile for one in time)
FEEDBACK_RANGE = (0.1, 3.0)  # the budget stays within these multiples of 1 - quantile
# Runners of equal worth (a flat stretch of the batch sizes: one unusually big
# run seen) are told apart by a hair, the deeper ones worth less: of equal
# runners the pool holds the fewest that keep the budget, not all of them.
TIE_BREAK = 1e-6
MAX_RECORD = 4000  # batches scored when calibrating
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class WarmTarget:
    target_idle: int
    forecast: float  # jobs expected to arrive within one start time
    reason: str


@dataclass(frozen=True, slots=True)
class Calibration:
    cutoff: float  # hold the m-th runner while rate * survival[m-1] >= cutoff
    survival: tuple[float, ...]
    mean_size: float
    jobs: int  # jobs scored


def rate_at(model: ArrivalModel, rates: list[float], t: float, start: float) -> tuple[float, float, float]:
    """(batches/s expected, the weekly pattern's part, the recent multiplier) at ``t``.

    The pattern is read now and where a runner created now would be ready,
    so a busy hour is held from one start time before it begins."""
    pattern = max(rates[how(t)], rates[how(t + start + STEP)])
    recent = model.recent(t, rates)
    return pattern * recent, pattern, recent


def calibrate(model: ArrivalModel, start: float, target_wait: float, budget: float, now: float) -> Calibration:
    """Score the jobs of the recent closed batches and pick the cut-off that
    leaves ``budget`` (a share of jobs, ``1 - quantile``) over the target."""
    closed = [b for b in model.batches if b.last < now - BATCH_GAP or b is not model.batches[-1]]
    survival = model.size_survival()
    if sum(b.predicted is not None for b in closed) < MIN_BATCHES:
        return Calibration(math.inf, tuple(survival), model.mean_size(), 0)
    record = closed[-MAX_RECORD:]
    horizon = max(0.0, start - target_wait)
    scores: list[float] = []
    first = 0
    inside = 0  # jobs of earlier batches within the horizon
    for i, b in enumerate(record):
        while first < i and b.start - record[first].start >= horizon:
            inside -= record[first].size
            first += 1
        # Scored with what the forecast said before the batch began: scored
        # with a pattern that has learned from it, each batch would lift its
        # own hour, and the cut-off with it, above what the pool ever sees.
        lam = b.predicted
        if lam is None:
            inside += b.size
            continue
        for n in range(b.size):
            scores.append(lam * worth(survival, n + inside))
        inside += b.size
    scores.sort()
    cut = int(budget * len(scores))
    cutoff = scores[cut] if cut < len(scores) else math.inf
    return Calibration(cutoff, tuple(survival), model.mean_size(), len(scores))


def feedback(gain: float, quantile: float, late: bool) -> float:
    """The budget's log-scale gain after one more job's outcome: each late job
    lowers it (more is held), each one in time raises it a little, so it
    settles where ``1 - quantile`` of the pool's jobs really are late whatever
    the model misses (a runner that came up late, a run that grew after its
    first job). Bounded to FEEDBACK_RANGE."""
    allowed = 1.0 - quantile
    gain += FEEDBACK_RATE * (allowed - (1.0 if late else 0.0))
    lo, hi = FEEDBACK_RANGE
    return min(math.log(hi), max(math.log(lo), gain))


def budget(quantile: float, gain: float) -> float:
    """The share of jobs calibration may leave over the target."""
    return (1.0 - quantile) * math.exp(gain)


def predict(model: ArrivalModel, t: float, start: float) -> float | None:
    """What the forecast expects just before ``t`` (None while learning: fewer
    than MIN_BATCHES batches or under a day watched)."""
    if len(model.batches) < MIN_BATCHES or model.since is None or t - model.since < LEARN:
        return None
    return rate_at(model, model.slot_rates(t), t - 1e-6, start)[0]


def worth(survival: tuple[float, ...] | list[float], k: int) -> float:
    """Batches-per-second weight of the ``k+1``-th idle runner: the share of
    batches it is needed for (see TIE_BREAK)."""
    return survival[k] * (1.0 - TIE_BREAK * k) if k < len(survival) else 0.0


def hold(lam: float, cal: Calibration) -> int:
    """Runners worth holding at ``lam`` batches/s."""
    if lam <= 0 or not math.isfinite(cal.cutoff):
        return 0
    n = 0
    while n < len(cal.survival) and cal.survival[n] > 0 and lam * worth(cal.survival, n) >= cal.cutoff:
        n += 1
    return n


def idle_count(
    model: ArrivalModel,
    cal: Calibration,
    *,
    now: float,
    start: float,
    target_wait: float,
    min_idle: int,
    max_idle: int,
    pool_max: int,
) -> int:
    """:func:`target`'s number alone (the planner's, on every pass)."""
    if start <= target_wait or cal.jobs == 0:
        return min_idle
    lam = rate_at(model, model.slot_rates(now), now, start)[0]
    return max(min_idle, min(hold(lam, cal), max_idle, pool_max))


def target(
    model: ArrivalModel,
    cal: Calibration,
    *,
    now: float,
    start: float,
    target_wait: float,
    quantile: float,
    min_idle: int,
    max_idle: int,
    pool_max: int,
) -> WarmTarget:
    """The idle runners to hold at ``now``, and why (``now`` on the STEP grid)."""
    ceiling = min(max_idle, pool_max)
    if start <= target_wait:
        return WarmTarget(
            min_idle, 0.0, f"runners start in {start:g}s <= target_wait {target_wait:g}s: created on demand in time"
        )
    if cal.jobs == 0:
        seen = len(model.batches)
        return WarmTarget(min_idle, 0.0, f"learning: {seen} run(s) of arrivals seen, need {MIN_BATCHES}")
    rates = model.slot_rates(now)
    lam, pattern, recent = rate_at(model, rates, now, start)
    forecast = lam * cal.mean_size * start
    want = hold(lam, cal)
    n = max(min_idle, min(want, ceiling))
    h = how(now)
    where = f"{_DAYS[h // 24]} {h % 24:02d}h"
    because = (
        f"forecast {lam * 3600:.2f} runs/h ({where} pattern {pattern * 3600:.2f}/h x recent {recent:.2f}), "
        f"runs of {cal.mean_size:.1f} jobs on average; runners start in {start:g}s"
    )
    if want == 0:
        reason = (
            f"{because}; below the cut-off {cal.cutoff * 3600:.3g}/h: jobs now start on demand, "
            f"within the {1 - quantile:.0%} of jobs allowed over {target_wait:g}s"
        )
    else:
        reason = f"{because}; {want} idle keep {quantile:.0%} of jobs within {target_wait:g}s"
    if want > ceiling:
        reason += f"; capped at {ceiling} (max_idle {max_idle}, max {pool_max})"
    elif n > want:
        reason += f"; min_idle {min_idle}"
    return WarmTarget(n, forecast, reason)
