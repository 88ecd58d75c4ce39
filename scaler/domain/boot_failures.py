"""Crash-loop backoff per pool: runners that die before they come online.

A runner image that exits at once (a bad entrypoint, a runner that cannot
reach the forge, a wrong credential path) ends every instance before its
runner is online. Its job is still queued, so without a brake the planner
makes the next instance at once: one benchmark run minted 20,004 runners for
300 jobs in a minute this way. After ``CRASH_LOOP_AFTER`` such ends in a row,
the pool makes nothing new until a backoff has passed (doubling each time, up
to ``limits.backoff_max``); its jobs are held back as ``crash_loop`` (and fall
through to the next candidate pool). One runner of the pool seen online ends
the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CRASH_LOOP_AFTER = 3


@dataclass(slots=True)
class _Streak:
    ends: int = 0  # instances in a row that ended before their runner was online
    held_until: float = 0.0
    last_error: str | None = None


@dataclass(slots=True)
class BootFailures:
    """Each pool's streak of instances that ended before coming online."""

    initial: float
    maximum: float
    _pools: dict[str, _Streak] = field(default_factory=dict)

    def ended_before_online(self, pool: str, now: float, error: str | None) -> bool:
        """Count one; True when it starts (or extends) a backoff."""
        s = self._pools.setdefault(pool, _Streak())
        s.ends += 1
        s.last_error = error
        if s.ends < CRASH_LOOP_AFTER:
            return False
        s.held_until = now + min(self.maximum, self.initial * 2 ** (s.ends - CRASH_LOOP_AFTER))
        return True

    def online(self, pool: str) -> None:
        self._pools.pop(pool, None)

    def held(self, now: float) -> dict[str, float]:
        """The pools in backoff at ``now``, with until when."""
        return {p: s.held_until for p, s in self._pools.items() if s.held_until > now}

    def streak(self, pool: str) -> tuple[int, float, str | None]:
        """(ends in a row, held until, the last end's error) for ``explain`` and the API."""
        s = self._pools.get(pool)
        return (s.ends, s.held_until, s.last_error) if s else (0, 0.0, None)


__all__ = ["CRASH_LOOP_AFTER", "BootFailures"]
