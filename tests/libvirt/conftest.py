"""Fixtures for the libvirt provider tests.

Real-daemon tests (marked ``libvirt``) read what ``.ci/services/libvirt.sh``
exports and fail loudly when it is missing or libvirtd does not answer.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from providers.libvirt import LibvirtProvider
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    LABEL_RUNNER_NAME,
    CredentialFile,
    LaunchSpec,
    ProviderSettings,
)
from scaler.secrets import Secret

CONTROLLER = "rs-test-ctl"
CRED_PATH = "/etc/runner-scaler/credential"
SESSION = secrets.token_hex(2)


@dataclass(frozen=True)
class LibvirtEnv:
    uri: str
    pool: str
    base: str
    kernel: str
    initrd: str
    dir: Path
    script: str

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    def settings(self, controller: str = CONTROLLER, **extra: Any) -> ProviderSettings:
        options = {
            "hosts": [{"uri": self.uri, "max_vcpus": 32}],
            "storage_pool": self.pool,
            "list_interval": 2.0,
            **extra,
        }
        return ProviderSettings("libvirt-test", "libvirt", controller, options)

    def pool_options(self, **extra: Any) -> dict[str, Any]:
        return {
            "base_image": self.base,
            "vcpus": 1,
            "memory_mib": 256,
            "domain_type": "qemu",
            "kernel": self.kernel,
            "initrd": self.initrd,
            "cmdline": "console=ttyS0 panic=-1 quiet",
            "serial_log_dir": str(self.logs),
            **extra,
        }


_VARS = {
    "uri": "RUNNER_SCALER_TEST_LIBVIRT_URI",
    "pool": "RUNNER_SCALER_TEST_LIBVIRT_POOL",
    "base": "RUNNER_SCALER_TEST_LIBVIRT_BASE",
    "kernel": "RUNNER_SCALER_TEST_LIBVIRT_KERNEL",
    "initrd": "RUNNER_SCALER_TEST_LIBVIRT_INITRD",
    "dir": "RUNNER_SCALER_TEST_LIBVIRT_DIR",
    "script": "RUNNER_SCALER_TEST_LIBVIRT_SCRIPT",
}


@pytest.fixture(scope="session")
def libvirt_env() -> LibvirtEnv:
    missing = [v for v in _VARS.values() if not os.environ.get(v)]
    if missing:
        pytest.fail(
            "libvirt tests need the service from .ci/services/libvirt.sh "
            f"(source it; libvirt_install; libvirt_start); missing: {', '.join(missing)}"
        )
    values = {k: os.environ[v] for k, v in _VARS.items()}
    import libvirt

    try:
        conn = libvirt.open(values["uri"])
    except libvirt.libvirtError as exc:
        pytest.fail(f"libvirtd at {values['uri']} does not answer: {exc}")
    try:
        conn.storagePoolLookupByName(values["pool"]).storageVolLookupByName(values["base"])
    except libvirt.libvirtError as exc:
        pytest.fail(f"storage pool {values['pool']} / base image {values['base']} missing: {exc}")
    finally:
        conn.close()
    return LibvirtEnv(**{**values, "dir": Path(values["dir"])})  # type: ignore[arg-type]


MakeLaunch = Callable[..., LaunchSpec]


def launch_for(env: LibvirtEnv, name: str, *, run_seconds: float, controller: str = CONTROLLER,
               secret: str | None = None, **opts: Any) -> LaunchSpec:
    full = name if name.startswith("rs-") else f"rs-{name}-{SESSION}"
    secret = secret or f"cred-{full}-{secrets.token_hex(16)}"
    return LaunchSpec(
        name=full,
        pool="lv",
        image=env.base,
        command=("sh", "-c", f"echo runner {full} starting; sleep {run_seconds}; echo runner done"),
        env={"RUNNER_NAME": full},
        files=(CredentialFile(CRED_PATH, Secret(secret)),),
        labels={
            LABEL_CONTROLLER: controller,
            LABEL_POOL: "lv",
            LABEL_RUNNER_NAME: full,
            LABEL_RUNNER_ID: "4242",
        },
        options=env.pool_options(**opts),
    )


@pytest.fixture
def make_launch(libvirt_env: LibvirtEnv) -> MakeLaunch:
    def make(name: str, *, run_seconds: float, **kw: Any) -> LaunchSpec:
        return launch_for(libvirt_env, name, run_seconds=run_seconds, **kw)

    return make


@pytest.fixture
async def provider(libvirt_env: LibvirtEnv) -> AsyncIterator[LibvirtProvider]:
    p = LibvirtProvider(libvirt_env.settings())
    yield p
    await p.close()


@pytest.fixture
async def provider_again(libvirt_env: LibvirtEnv) -> AsyncIterator[LibvirtProvider]:
    p = LibvirtProvider(libvirt_env.settings())
    yield p
    await p.close()


@pytest.fixture
def exit_timeout() -> float:
    return 90.0
