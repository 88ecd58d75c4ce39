"""Small server-drawn SVG charts: no chart library, no script, nothing inline
a strict CSP would refuse (the look comes from the stylesheet)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 200, 40
_PAD = 2  # keeps the stroke inside the box at 0 and at the top
# At most this many points per line (one every ~3 px), on whole pixels: more
# is bytes on every refresh of every tab, not detail anyone can see.
POINTS = 60


@dataclass(frozen=True, slots=True)
class Chart:
    line: str  # polyline points
    area: str  # polygon points (the line closed down to zero)
    dots: str  # path data: one round-capped zero-length stroke per dot (the stylesheet draws them)
    top: float  # the value at the top edge
    last: float | None
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not self.line and not self.dots


def nice_top(value: float) -> float:
    """The smallest of 1, 2, 5 x 10^n at or above ``value`` (at least 1)."""
    step = 1.0
    while True:
        for m in (1.0, 2.0, 5.0):
            if m * step >= value:
                return m * step
        step *= 10


def _x(at: float, start: float, span: float) -> int:
    return round(max(0.0, min(1.0, (at - start) / span)) * WIDTH)


def _y(value: float, top: float) -> int:
    return round(HEIGHT - _PAD - (min(value, top) / top) * (HEIGHT - 2 * _PAD))


def thin(
    series: Sequence[tuple[float, float]], start: float, span: float, n: int = POINTS
) -> list[tuple[float, float]]:
    """At most one point per ``n``-th of the time axis: the highest of each
    (a peak in the queue or the wait is what the chart is for)."""
    out: list[tuple[float, float]] = []
    last = -1
    for at, value in series:
        slot = min(n - 1, max(0, int((at - start) / span * n)))
        if slot != last:
            out.append((at, value))
            last = slot
        elif value >= out[-1][1]:
            out[-1] = (at, value)
    return out


def chart(
    series: Sequence[tuple[float, float]],
    start: float,
    end: float,
    *,
    dots: Sequence[tuple[float, float]] = (),
    step: bool = False,
) -> Chart:
    """``series`` as a line (``step``: held until the next sample, for
    counts), ``dots`` as points, on a time axis from ``start`` to ``end``."""
    span = max(end - start, 1e-9)
    last = series[-1][1] if series else None
    series, dots = thin(series, start, span), thin(dots, start, span)
    top = nice_top(max([v for _, v in series] + [v for _, v in dots] + [0.0]))
    pts: list[tuple[int, int]] = []
    for at, value in series:
        x, y = _x(at, start, span), _y(value, top)
        if step and pts:
            pts.append((x, pts[-1][1]))
        pts.append((x, y))
    line = " ".join(f"{x},{y}" for x, y in pts)
    area = f"{pts[0][0]},{HEIGHT} {line} {pts[-1][0]},{HEIGHT}" if pts else ""
    marks = "".join(f"M{_x(at, start, span)} {_y(v, top)}h0" for at, v in dots)
    return Chart(line, area, marks, top, last)
