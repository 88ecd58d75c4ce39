"""Scenario fixtures: canary credentials in the environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scenarios.sim import CANARY_ENV


@pytest.fixture(autouse=True)
def _canary_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key, value in CANARY_ENV.items():
        monkeypatch.setenv(key, value)
    yield
