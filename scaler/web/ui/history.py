"""The last hour of queue depth and job wait per pool, for the overview's charts.

A sample every ``ui.sample_interval`` (a guarded loop with a heartbeat, so a
dead sampler fails ``/healthz`` like any loop). Each pool keeps at most
``2 x POINTS`` slots of the last hour, each the highest of the samples in it:
a slot is one sample at first, and twice as long each time the slots would
be more (up to an hour / ``POINTS``), so a young chart is as fine as its
samples and memory is bounded by pools x points whatever the interval. The
charts are drawn once per sample, a few ms of work at a time, and pages show
the last drawing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import Markup

from scaler.app import Scaler
from scaler.durations import format_duration
from scaler.web.ui.charts import POINTS, Chart, chart
from scaler.web.ui.index import Indexes
from scaler.web.ui.slices import sliced

WINDOW = 3600.0
# Draws a chart as SVG: the UI's autoescaped ``spark`` macro, so the pages
# reuse its output as it is instead of rendering every point each refresh.
Render = Callable[[Chart, str, str], Markup]
QUEUE_LABEL, WAIT_LABEL = "queued jobs, last hour", "longest wait in seconds, last hour"


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    queued: int  # the pool's waiting jobs: assigned to it, or held back at it
    oldest: float  # how long the longest-waiting job for this pool has waited
    started: float | None  # the longest wait of a job that started since the last sample


@dataclass(frozen=True, slots=True)
class Drawn:
    queue: Chart
    wait: Chart
    queue_svg: Markup
    wait_svg: Markup
    span: str  # how much time the charts cover


EMPTY = Drawn(chart([], 0.0, 1.0), chart([], 0.0, 1.0), Markup(""), Markup(""), "")


class History:
    def __init__(self, every: float, window: float = WINDOW) -> None:
        self.every = every
        self.window = window
        self._slots: dict[str, float] = {}  # per pool, the time one kept sample stands for
        self._pools: dict[str, deque[Sample]] = {}
        self.drawn: dict[str, Drawn] = {}

    def add(self, pool: str, sample: Sample) -> None:
        ring = self._pools.setdefault(pool, deque())
        slot = self._slots.setdefault(pool, self.every)
        if ring and sample.at // slot == ring[-1].at // slot:
            ring[-1] = _highest(ring[-1], sample)
        else:
            ring.append(sample)
        while ring[0].at < sample.at - self.window:
            ring.popleft()
        if len(ring) > 2 * POINTS and slot < self.window / POINTS:
            self._slots[pool] = slot = slot * 2
            merged: deque[Sample] = deque()
            for s in ring:
                if merged and s.at // slot == merged[-1].at // slot:
                    merged[-1] = _highest(merged[-1], s)
                else:
                    merged.append(s)
            self._pools[pool] = merged

    def series(self, pool: str, now: float) -> list[Sample]:
        return [s for s in self._pools.get(pool, ()) if s.at >= now - self.window]

    def start(self, now: float) -> float:
        """Where the charts' time axis begins: an hour ago, or (younger) when
        sampling began, with at least 30 samples' worth shown."""
        first = min((ring[0].at for ring in self._pools.values() if ring), default=now)
        return max(now - self.window, min(first, now - 30 * self.every))

    def draw(self, pool: str, start: float, now: float, render: Render) -> None:
        series = self.series(pool, now)
        queue = chart([(s.at, s.queued) for s in series], start, now, step=True)
        wait = chart(
            [(s.at, s.oldest) for s in series],
            start,
            now,
            dots=[(s.at, s.started) for s in series if s.started is not None],
        )
        svg = render(queue, "queue", QUEUE_LABEL), render(wait, "wait", WAIT_LABEL)
        self.drawn[pool] = Drawn(queue, wait, *svg, format_duration(round(now - start)))


def _highest(a: Sample, b: Sample) -> Sample:
    """One slot's sample from two: the later time, the higher values."""
    started = a.started if b.started is None else max(a.started or 0.0, b.started)
    return Sample(max(a.at, b.at), max(a.queued, b.queued), max(a.oldest, b.oldest), started)


async def take_sample(scaler: Scaler, history: History, indexes: Indexes, render: Render) -> None:
    await indexes.catch_up()
    now = scaler.clock.now()
    jobs = indexes.jobs
    started = scaler.journal.take_waits() if scaler.journal is not None else {}
    names = [p.name for p in scaler.config.pools]
    for name in names:  # (counters: one look-up per pool)
        queued = jobs.in_bucket("assigned", pool=name) + jobs.in_bucket("held", pool=name)
        first = jobs.oldest_queued_at(name)
        oldest = max(0.0, now - first) if first is not None else 0.0
        history.add(name, Sample(now, queued, oldest, started.get(name)))
    start = history.start(now)
    await sliced(names, lambda name: history.draw(name, start, now, render))
