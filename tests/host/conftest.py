"""Fixtures for the host provider against real bubblewrap (marker ``host``).

Real sandboxes need root and Debian's ``bubblewrap`` (``.ci/services/bubblewrap.sh``);
the fixtures fail loudly, never skip, when either is missing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.host import HostProvider
from providers.host._proc import pids, uids
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_CREATED_AT,
    LABEL_JOB_ID,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    LABEL_RUNNER_NAME,
    CredentialFile,
    LaunchSpec,
    ProviderSettings,
)
from scaler.secrets import Secret

REPO = Path(__file__).resolve().parents[2]
STANDIN_DIR = REPO / "tests" / "standin"
HOW_TO = "install it with: source .ci/services/bubblewrap.sh && bubblewrap_install (as root)"
CRED_PATH = "/data/.runner"
# Well inside the free 0x70000000 block, away from the provider's default range.
TEST_UID_FIRST = 0x70100000
TEST_UID_COUNT = 4096


@pytest.fixture(scope="session")
def bwrap() -> str:
    if os.geteuid() != 0:
        pytest.fail("the host provider's real tests run as root (bwrap mounts and switches UIDs)")
    found = shutil.which("bwrap")
    if found is None:
        pytest.fail("bwrap (Debian package bubblewrap) is missing; " + HOW_TO)
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    probe = subprocess.run(
        [found, "--unshare-pid", "--die-with-parent", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
         "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--", "/usr/bin/true"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if probe.returncode != 0:
        pytest.fail(f"bwrap cannot make a sandbox here: {probe.stderr.strip()}")
    return found


@dataclass
class HostEnv:
    root: Path
    controller: str

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def work(self) -> Path:
        return self.root / "work"

    def settings(self, controller: str | None = None, **extra: Any) -> ProviderSettings:
        options = {
            "mode": "bubblewrap",
            "state_dir": str(self.state),
            "work_root": str(self.work),
            "uid_range": {"first": TEST_UID_FIRST, "count": TEST_UID_COUNT},
            "start_timeout": 20,
            "list_interval": 0.2,
            **extra,
        }
        return ProviderSettings("host-test", "host", controller or self.controller, options)


def processes_in_test_range() -> list[tuple[int, tuple[int, ...]]]:
    out = []
    for pid in pids():
        ids = uids(pid)
        if any(TEST_UID_FIRST <= u < TEST_UID_FIRST + TEST_UID_COUNT for u in ids):
            out.append((pid, ids))
    return out


@pytest.fixture
def host_env(bwrap: str, tmp_path: Path) -> Iterator[HostEnv]:
    root = tmp_path / "host"
    root.mkdir(mode=0o700)
    env = HostEnv(root, f"rs-{secrets.token_hex(3)}")
    yield env
    # whatever a test left: torn down by a fresh provider, then nothing may remain
    provider = HostProvider(env.settings())

    async def clean() -> None:
        for info in await provider.list():
            await provider.delete(info.name)

    asyncio.run(clean())
    left = processes_in_test_range()
    assert not left, f"processes of sandbox UIDs left behind: {left}"


@pytest.fixture
async def provider(host_env: HostEnv) -> AsyncIterator[HostProvider]:
    p = HostProvider(host_env.settings())
    yield p
    await p.close()


@pytest.fixture
async def provider_again(host_env: HostEnv) -> AsyncIterator[HostProvider]:
    p = HostProvider(host_env.settings())
    yield p
    await p.close()


MakeLaunch = Callable[..., LaunchSpec]


def pool_options(**extra: Any) -> dict[str, Any]:
    """Host paths for the tests: the system, plus the stand-in runner's directory."""
    base = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", str(STANDIN_DIR)]
    return {"read_only_paths": [*base, *extra.pop("read_only_extra", [])], **extra}


@pytest.fixture
def make_launch(host_env: HostEnv) -> MakeLaunch:
    def make(
        name: str,
        *,
        run_seconds: float = 30,
        script: str | None = None,
        options: dict[str, Any] | None = None,
        files: tuple[CredentialFile, ...] | None = None,
        max_lifetime: float | None = 300,
    ) -> LaunchSpec:
        full = f"{host_env.controller}-{name}"
        if script is None:
            script = f"cat {CRED_PATH} >/dev/null && sleep {run_seconds}"
        return LaunchSpec(
            name=full,
            pool="host",
            image="",
            command=("/bin/sh", "-c", script),
            env={"RUNNER_NAME": full},
            files=files if files is not None else (CredentialFile(CRED_PATH, Secret(f"cred-{secrets.token_hex(16)}")),),
            labels={
                LABEL_CONTROLLER: host_env.controller,
                LABEL_POOL: "host",
                LABEL_RUNNER_NAME: full,
                LABEL_RUNNER_ID: "42",
                LABEL_JOB_ID: "7",
                LABEL_CREATED_AT: "1700000000.000",
            },
            options=pool_options(**(options or {})),
            max_lifetime=max_lifetime,
        )

    return make


@pytest.fixture
def exit_timeout() -> float:
    return 30.0
