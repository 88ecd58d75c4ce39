"""A pool's arrival forecast, learned from the arrivals the scaler sees.

Jobs arrive in *runs*: a push queues a run's jobs together, so arrivals are
grouped into batches (jobs less than :data:`BATCH_GAP` apart). The forecast
of batches per second at a time ``t`` is

* a weekly pattern: batches seen per hour of the week over the last
  ``window`` (28 days), shrunk towards the same hour of the day and towards
  the overall rate while there is little data (:data:`PRIOR`), looked at
  where a runner created now would be ready (one start time ahead);
* times the recent rate: batches seen over the last :data:`RECENT` against
  what the pattern expected then (a busier day than usual holds more).

Plain data and arithmetic, no clock and no I/O: every call takes ``now``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

HOUR = 3600.0
WEEK = 168 * HOUR
BATCH_GAP = 10.0  # jobs this close together are one run's
PRIOR = HOUR  # pseudo-exposure shrinking a slot towards its parent rate
RECENT = 2 * HOUR
RECENT_PRIOR = 1.0  # pseudo-batches in the recent-rate ratio
WINDOW = 28 * 86400.0
MAX_BATCHES = 20_000  # bounded, like everything else


def how(t: float) -> int:
    """Hour of the week, 0 = Monday 00:00 UTC (the epoch was a Thursday)."""
    return int(((t // 86400) + 3) % 7) * 24 + int((t % 86400) // HOUR)


def _spans(a: float, b: float) -> list[tuple[int, float]]:
    """(hour of the week, seconds) pieces of a short interval [a, b)."""
    out = []
    t = a
    while t < b:
        nxt = min(b, (math.floor(t / HOUR) + 1) * HOUR)
        out.append((how(t), nxt - t))
        t = nxt
    return out


def _exposure(a: float, b: float) -> list[float]:
    """Seconds of [a, b) that fall in each hour of the week."""
    out = [0.0] * 168
    if b <= a:
        return out
    weeks = math.floor((b - a) / WEEK)
    if weeks:
        out = [weeks * HOUR] * 168
        a += weeks * WEEK
    for slot, seconds in _spans(a, b):
        out[slot] += seconds
    return out


class _Pattern:
    """Slot rates from counts and exposures, shrunk towards the hour of day
    and the overall rate (:data:`PRIOR`)."""

    def __init__(self, counts: Sequence[int], expo: Sequence[float]) -> None:
        self.counts, self.expo = counts, expo
        self.total_c, self.total_e = sum(counts), sum(expo)
        self.hod_c = [sum(counts[d * 24 + h] for d in range(7)) for h in range(24)]
        self.hod_e = [sum(expo[d * 24 + h] for d in range(7)) for h in range(24)]
        self.rates = [self.rate(s) for s in range(168)]

    def rate(self, slot: int) -> float:
        if self.total_e <= 0 or self.total_c <= 0:
            return 0.0
        overall = self.total_c / self.total_e
        h = slot % 24
        hod = (self.hod_c[h] + PRIOR * overall) / (self.hod_e[h] + PRIOR)
        return (self.counts[slot] + PRIOR * hod) / (self.expo[slot] + PRIOR)


@dataclass(slots=True)
class Batch:
    start: float
    last: float
    size: int
    # Batches per second the forecast expected just before this batch began
    # (None while it was still learning): what calibration scores it with.
    predicted: float | None = None


@dataclass
class ArrivalModel:
    """Batches of one pool over the last ``window`` seconds."""

    window: float = WINDOW
    batches: list[Batch] = field(default_factory=list)
    since: float | None = None  # first arrival seen: exposure starts here
    _how: list[int] = field(default_factory=lambda: [0] * 168)
    _rates_key: tuple[int, float] | None = None
    _cached: _Pattern | None = None
    version: int = 0  # bumped on every change, for callers' caches
    pending_prediction: float | None = None  # for the next batch observed

    # --- learning -------------------------------------------------------------

    def starts_batch(self, t: float) -> bool:
        """Whether an arrival at ``t`` would begin a batch of its own."""
        i = bisect.bisect_right(self.batches, t, key=lambda b: b.start)
        if i and t - self.batches[i - 1].last <= BATCH_GAP:
            return False
        return not (i < len(self.batches) and self.batches[i].start - t <= BATCH_GAP)

    def observe(self, t: float, n: int = 1) -> None:
        """``n`` jobs arrived at ``t`` (reports can come late and out of order)."""
        self.version += 1
        if self.since is None or t < self.since:
            self.since = t
        i = bisect.bisect_right(self.batches, t, key=lambda b: b.start)
        prev = self.batches[i - 1] if i else None
        if prev is not None and t - prev.last <= BATCH_GAP:
            prev.size += n
            prev.last = max(prev.last, t)
            return
        nxt = self.batches[i] if i < len(self.batches) else None
        if nxt is not None and nxt.start - t <= BATCH_GAP:
            self._how[how(nxt.start)] -= 1
            nxt.start, nxt.size = t, nxt.size + n
            self._how[how(t)] += 1
            return
        self.batches.insert(i, Batch(t, t, n, self.pending_prediction))
        self.pending_prediction = None
        self._how[how(t)] += 1
        self._forget(self.batches[-1].start - self.window)

    def _forget(self, before: float) -> None:
        drop = 0
        while drop < len(self.batches) and (
            self.batches[drop].start < before or len(self.batches) - drop > MAX_BATCHES
        ):
            self._how[how(self.batches[drop].start)] -= 1
            drop += 1
        del self.batches[:drop]

    # --- the pattern ----------------------------------------------------------

    def slot_rates(self, now: float) -> list[float]:
        """Batches per second for each hour of the week (shrunk while data is
        thin), from the batches up to ``now`` and the time watched until the
        hour ``now`` is in (rates move slowly; this keeps them cheap)."""
        return self._pattern(now).rates

    def _pattern(self, now: float) -> _Pattern:
        as_of = math.floor(now / HOUR) * HOUR
        key = (self.version, as_of)
        if key == self._rates_key and self._cached is not None:
            return self._cached
        start = self.since if self.since is not None else now
        seen = [b.start for b in self.batches[-1:] if b.start <= now]
        end = max(as_of, *seen, start)
        pattern = _Pattern(self._counted(now), _exposure(max(start, end - self.window), end))
        self._rates_key, self._cached = key, pattern
        return pattern

    def _counted(self, now: float) -> list[int]:
        # Batches in the window as of ``now`` (those newer than now are not yet
        # known to a caller asking about the past, e.g. calibration).
        if not self.batches or self.batches[-1].start <= now:
            return list(self._how)
        counts = [0] * 168
        for b in self.batches:
            if b.start <= now:
                counts[how(b.start)] += 1
        return counts

    def recent(self, now: float, rates: Sequence[float]) -> float:
        """Batches seen over the last RECENT against what the pattern expected."""
        lo = bisect.bisect_left(self.batches, now - RECENT, key=lambda b: b.start)
        hi = bisect.bisect_right(self.batches, now, key=lambda b: b.start)
        expected = sum(rates[slot] * seconds for slot, seconds in _spans(now - RECENT, now))
        return (hi - lo + RECENT_PRIOR) / (expected + RECENT_PRIOR)

    def size_survival(self) -> list[float]:
        """``s[k]`` = share of batches with more than ``k`` jobs."""
        if not self.batches:
            return [0.0]
        biggest = max(b.size for b in self.batches)
        counts = [0] * (biggest + 1)
        for b in self.batches:
            counts[b.size] += 1
        out, left = [], len(self.batches)
        for k in range(biggest + 1):
            left -= counts[k]
            out.append(left / len(self.batches))
        return out

    def mean_size(self) -> float:
        return sum(b.size for b in self.batches) / len(self.batches) if self.batches else 0.0
