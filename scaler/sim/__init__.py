"""``runner-scaler simulate``: replay a job trace through the real core on a
virtual clock, with a simulated forge and provider, and report waits and
instance cost per pool (:mod:`scaler.sim.engine`, :mod:`scaler.sim.report`)."""

from scaler.sim.engine import Engine, Replay, ReplayOptions, replay
from scaler.sim.latency import Latency

__all__ = ["Engine", "Latency", "Replay", "ReplayOptions", "replay"]
