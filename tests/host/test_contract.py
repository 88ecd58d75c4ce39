"""The shared provider contract, against real bubblewrap sandboxes."""

from __future__ import annotations

import pytest

from tests.contract.provider_contract import ProviderContract

pytestmark = pytest.mark.host


class TestHostContract(ProviderContract):
    pass
