"""Shared pieces of the simulator tests: configs, small traces, the bitcoin trace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scaler.config import Config, parse_config
from scaler.trace.format import TraceJob, read_trace

# shared/ lies beside the repository (CI's fresh clone), or beside the worktree folder.
_HERE = Path(__file__).resolve()
_CANDIDATES = [Path(os.environ["RUNNER_SCALER_TRACES"])] if os.environ.get("RUNNER_SCALER_TRACES") else []
_CANDIDATES += [_HERE.parents[3] / "shared" / "traces", _HERE.parents[4] / "shared" / "traces"]
TRACES = next((c for c in _CANDIDATES if c.is_dir()), _CANDIDATES[0])
BITCOIN = TRACES / "bitcoin-core-2025-09-04_to_09-24.csv"
if not BITCOIN.exists():
    raise RuntimeError(f"the bitcoin trace is not at {BITCOIN} (set RUNNER_SCALER_TRACES)")
T0 = 1_757_894_400.0  # Mon 15 Sep 2025 00:00 UTC


def sim_config(*, pools: list[dict[str, Any]] | None = None, **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "controller_id": "sim",
        "forges": [
            {
                "name": "forge",
                "type": "gitea",
                "url": "https://gitea.example.com",
                "scope": {"kind": "organization", "name": "acme"},
                "token_env": "NOT_READ",
                "webhook_secret_envs": ["NOT_READ"],
            }
        ],
        "providers": [{"name": "cloud", "type": "memory"}],
        "pools": pools or [{"name": "linux", "forge": "forge", "provider": "cloud", "labels": ["linux"], "max": 50}],
    }
    data.update(overrides)
    return parse_config(data)


def job(i: int, at: float, run: float = 300.0, labels: tuple[str, ...] = ("linux",)) -> TraceJob:
    return TraceJob(i, "acme/app", labels, at, at + 5, at + 5 + run)


@pytest.fixture(scope="session")
def bitcoin() -> list[TraceJob]:
    return read_trace(BITCOIN)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The simulate and export commands configure logging for their process;
    in-process runs here must not leave it configured for other tests."""
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)
