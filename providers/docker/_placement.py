"""Which host gets the next container (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class HostLoad:
    name: str
    active: int  # this provider's live containers there (incl. creates in flight)
    cap: int | None  # None: no per-host cap
    healthy: bool = True

    @property
    def has_room(self) -> bool:
        return self.healthy and (self.cap is None or self.active < self.cap)


def choose_host(hosts: Sequence[HostLoad], placement: Literal["spread", "pack"]) -> str | None:
    """``spread``: the host with the fewest containers; ``pack``: the fullest
    host that still has room. Ties go to the host listed first; unhealthy or
    full hosts are skipped; None when no host can take one more."""
    best: tuple[int, int] | None = None
    chosen: str | None = None
    for order, host in enumerate(hosts):
        if not host.has_room:
            continue
        key = (host.active if placement == "spread" else -host.active, order)
        if best is None or key < best:
            best, chosen = key, host.name
    return chosen
