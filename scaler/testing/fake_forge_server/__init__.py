"""A stateful fake forge over HTTP that plays Gitea, Forgejo or GitHub, rebuilt
from the forges' own source: every shape it sends or answers is recorded in
``tests/forges/shapes/`` with the file and tag it was read at, and
``tests/forges/test_recorded_shapes.py`` holds it against them.

Run it standalone: ``python -m scaler.testing.fake_forge_server --kind gitea``.
"""

from scaler.testing.fake_forge_server._base import ADMIN_TOKEN, FJob, FRunner, Hook, Repo, SentDelivery
from scaler.testing.fake_forge_server.faults import Fault
from scaler.testing.fake_forge_server.server import FakeForgeServer, main
from scaler.testing.fake_forge_server.webhooks import DeliveryFaults

__all__ = [
    "ADMIN_TOKEN",
    "DeliveryFaults",
    "FJob",
    "FRunner",
    "FakeForgeServer",
    "Fault",
    "Hook",
    "Repo",
    "SentDelivery",
    "main",
]
