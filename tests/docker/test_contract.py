"""The shared provider contract, against a real dockerd."""

from __future__ import annotations

import pytest

from tests.contract.provider_contract import ProviderContract

pytestmark = pytest.mark.docker


class TestDockerContract(ProviderContract):
    pass
