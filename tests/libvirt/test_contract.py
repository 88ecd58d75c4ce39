"""The shared provider contract against real libvirtd + QEMU (qemu:///system)."""

from __future__ import annotations

import pytest

from tests.contract.provider_contract import ProviderContract

pytestmark = pytest.mark.libvirt


class TestLibvirtContract(ProviderContract):
    pass
