"""Fault schedules: functions of (operation, now) returning the error to raise."""

from __future__ import annotations

import random
from collections.abc import Callable, Collection

from tests.scenarios.sim import Fault

Make = Callable[[str], Exception]


def window(start: float, end: float, make: Make, ops: Collection[str] | None = None) -> Fault:
    """Every call to ``ops`` (all when None) fails between ``start`` and ``end``."""

    def fault(op: str, now: float) -> Exception | None:
        if start <= now < end and (ops is None or op in ops):
            return make(op)
        return None

    return fault


def chance(rng: random.Random, p: float, make: Make, ops: Collection[str] | None = None, until: float = 1e18) -> Fault:
    """Each call to ``ops`` fails with probability ``p`` (until ``until``)."""

    def fault(op: str, now: float) -> Exception | None:
        if now < until and (ops is None or op in ops) and rng.random() < p:
            return make(op)
        return None

    return fault


def bursts(period: float, length: float, start: float, make: Make, ops: Collection[str] | None = None) -> Fault:
    """Calls fail for ``length`` seconds out of every ``period``."""

    def fault(op: str, now: float) -> Exception | None:
        if now >= start and (now - start) % period < length and (ops is None or op in ops):
            return make(op)
        return None

    return fault


def combine(*faults: Fault) -> Fault:
    def fault(op: str, now: float) -> Exception | None:
        for f in faults:
            exc = f(op, now)
            if exc is not None:
                return exc
        return None

    return fault


FORGE_CALLS = ("list_jobs", "list_runners", "get_runner", "mint", "deregister")
