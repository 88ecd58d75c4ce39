"""The shared provider contract, against the fake Kubernetes API server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from providers.kubernetes import KubernetesProvider
from scaler.provider import LaunchSpec
from tests.contract.provider_contract import ProviderContract
from tests.kubernetes.conftest import ProviderFactory, launch

pytestmark = pytest.mark.kubernetes


class TestKubernetesContract(ProviderContract):
    @pytest.fixture
    def provider(self, make_provider: ProviderFactory) -> KubernetesProvider:
        return make_provider()

    @pytest.fixture
    def provider_again(self, make_provider: ProviderFactory) -> KubernetesProvider:
        return make_provider()

    @pytest.fixture
    def make_launch(self) -> Callable[..., LaunchSpec]:
        def make(name: str, *, run_seconds: float) -> LaunchSpec:
            return launch(name, run_seconds=run_seconds)

        return make

    @pytest.fixture
    def exit_timeout(self) -> float:
        return 10.0
