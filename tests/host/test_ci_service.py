"""``.ci/services/bubblewrap.sh``: idempotent, and it says when a sandbox cannot be made."""

from __future__ import annotations

import subprocess

import pytest

from tests.host.conftest import REPO

pytestmark = pytest.mark.host

SCRIPT = REPO / ".ci" / "services" / "bubblewrap.sh"


def _bash(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f"set -eu; source {SCRIPT}; {body}"], capture_output=True, text=True,
                          timeout=600, check=False)


def test_install_start_stop_twice(bwrap: str) -> None:
    """A second run on the same machine installs nothing and succeeds again."""
    for _ in range(2):
        proc = _bash("bubblewrap_install; bubblewrap_start; bubblewrap_stop")
        assert proc.returncode == 0, proc.stderr
        assert "apt-get install" not in proc.stderr and "bwrap makes sandboxes" in proc.stderr


def test_start_fails_loudly_when_bwrap_cannot_run(bwrap: str) -> None:
    """With a bwrap that cannot make a sandbox, start fails and says why."""
    proc = _bash("bwrap() { echo 'bwrap: No permissions to create new namespace' >&2; return 1; }; bubblewrap_start")
    assert proc.returncode != 0 and "cannot make a sandbox here: bwrap: No permissions" in proc.stderr
