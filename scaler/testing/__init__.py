"""Test doubles shipped beside the interfaces (like httpx's MockTransport):
an in-memory provider and an in-process fake forge with real HMAC signing.
Use them in tests, or to try a config with no infrastructure."""

from scaler.testing.fake_forge import FakeForge, FakeForgeState
from scaler.testing.memory import MemoryProvider

__all__ = ["FakeForge", "FakeForgeState", "MemoryProvider"]
