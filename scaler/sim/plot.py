"""The replay as a picture (``--plot OUT.png``; needs matplotlib, the ``plot`` extra).

Three panels over time, one column per config when comparing: jobs waiting
for a runner; instances by state (booting, idle, busy) with the warm target;
and each job's wait at its arrival, with the target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scaler.sim.engine import Replay
from scaler.sim.world import Sample

MAX_POINTS = 3000


def _coarse(samples: Sequence[Sample], lo: float, hi: float) -> list[Sample]:
    """At most about 2*MAX_POINTS samples for a step chart: per bucket the
    state with the most instances (queue depth: its peak), then the state the
    bucket ended in, so a quiet night after a spike draws flat, not as the spike."""
    inside = [s for s in samples if lo <= s.t < hi]
    if len(inside) <= MAX_POINTS:
        return inside
    width = (hi - lo) / MAX_POINTS
    out: list[Sample] = []
    bucket: list[Sample] = []

    def flush() -> None:
        start = lo + width * int((bucket[0].t - lo) / width)
        top = max(bucket, key=lambda s: s.booting + s.idle + s.busy)
        peak_q = max(s.queued for s in bucket)
        out.append(Sample(start, peak_q, top.booting, top.idle, top.busy))
        out.append(dataclasses.replace(bucket[-1], t=start + width * 0.999))

    for s in inside:
        if bucket and int((s.t - lo) / width) != int((bucket[0].t - lo) / width):
            flush()
            bucket = []
        bucket.append(s)
    if bucket:
        flush()
    return out


def _dates(ts: Sequence[float]) -> list[datetime]:
    return [datetime.fromtimestamp(t, UTC) for t in ts]


def plot(replays: Mapping[str, Replay], reports: Mapping[str, Mapping[str, Any]], out: str | Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'runner-scaler[plot]'") from None
    cols = len(replays)
    fig, axes = plt.subplots(3, cols, figsize=(7.5 * cols, 9), sharex="col", squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.6, 1.3]})
    ymax_inst = 1
    for replay in replays.values():
        for s in replay.world.samples:
            ymax_inst = max(ymax_inst, s.booting + s.idle + s.busy)
    for c, (label, replay) in enumerate(replays.items()):
        rep = reports[label]
        lo, hi = replay.window
        target = rep["replay"]["target_wait_s"]
        o = rep["overall"]
        samples = _coarse(replay.world.samples, lo, hi)
        t = _dates([s.t for s in samples])
        ax_q, ax_i, ax_w = axes[0][c], axes[1][c], axes[2][c]
        ax_q.set_title(
            f"{label}\np95 wait {o['wait_p95_s']:.0f}s · idle {o['idle_instance_minutes']:,.0f} instance-min · "
            f"{o['instances_created']:,} created",
            fontsize=10,
        )
        ax_q.fill_between(t, [s.queued for s in samples], step="post", color="#d62728", alpha=0.7, lw=0)
        ax_q.set_ylabel("jobs waiting")
        stack = [
            ([s.busy for s in samples], "busy", "#1f77b4"),
            ([s.idle for s in samples], "idle", "#ff7f0e"),
            ([s.booting for s in samples], "booting", "#bbbbbb"),
        ]
        ax_i.stackplot(t, *[v for v, _, _ in stack], labels=[n for _, n, _ in stack],
                       colors=[k for _, _, k in stack], step="post", lw=0)
        if replay.warm:
            wt = [(a, n) for a, n in replay.warm if a < hi]
            wt = [(max(a, lo), n) for a, n in wt]
            ax_i.step(_dates([a for a, _ in wt] + [hi]), [n for _, n in wt] + [wt[-1][1]] if wt else [], where="post",
                      color="black", lw=0.8, label="warm target")
        ax_i.set_ylim(0, ymax_inst * 1.05)
        ax_i.set_ylabel("instances")
        ax_i.legend(loc="upper left", fontsize=8, ncol=4, frameon=False)
        jobs = [j for j in replay.world.jobs if lo <= j.arrival < hi and j.taken_at is not None]
        late = [j for j in jobs if j.taken_at - j.arrival > target]  # type: ignore[operator]
        ok = [j for j in jobs if j.taken_at - j.arrival <= target]  # type: ignore[operator]
        for group, colour in ((ok, "#2ca02c"), (late, "#d62728")):
            ax_w.scatter(_dates([j.arrival for j in group]), [j.taken_at - j.arrival for j in group],  # type: ignore[operator]
                         s=4, color=colour, alpha=0.5, lw=0)
        ax_w.axhline(target, color="black", lw=0.8, ls="--")
        ax_w.text(0.01, 0.92, f"target {target:g}s: {len(late)} of {len(jobs)} jobs over", transform=ax_w.transAxes,
                  fontsize=8)
        ax_w.set_ylabel("wait (s)")
        ax_w.xaxis.set_major_formatter(mdates.DateFormatter("%a %d"))  # type: ignore[no-untyped-call]
        for ax in (ax_q, ax_i, ax_w):
            ax.grid(alpha=0.3, lw=0.5)
            ax.margins(x=0)
    for c in range(1, cols):
        axes[0][c].sharey(axes[0][0])
        axes[2][c].sharey(axes[2][0])
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
