"""Fixtures for tests against a real dockerd (started by .ci/services/docker.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from providers.docker import DockerProvider
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

HOW_TO_START = (
    "start one with:\n"
    "    source .ci/services/docker.sh && docker_install && docker_start\n"
    "(as root; it exports RUNNER_SCALER_TEST_DOCKER_HOST and RUNNER_SCALER_TEST_DOCKER_IMAGE)"
)
CRED_PATH = "/run/runner/credentials"


def _socket(url: str) -> str:
    if not url.startswith("unix://"):
        pytest.fail(f"RUNNER_SCALER_TEST_DOCKER_HOST={url!r}: the tests use a unix:// socket only")
    return url[len("unix://") :]


@pytest.fixture(scope="session")
def docker_host() -> str:
    url = os.environ.get("RUNNER_SCALER_TEST_DOCKER_HOST")
    if not url:
        pytest.fail("RUNNER_SCALER_TEST_DOCKER_HOST is not set: these tests need a real dockerd; " + HOW_TO_START)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=_socket(url)), timeout=5) as c:
            c.get("http://docker/_ping").raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"dockerd at {url} does not answer _ping ({exc}); " + HOW_TO_START)
    return url


@pytest.fixture(scope="session")
def docker_image(docker_host: str) -> str:
    image = os.environ.get("RUNNER_SCALER_TEST_DOCKER_IMAGE")
    if not image:
        pytest.fail("RUNNER_SCALER_TEST_DOCKER_IMAGE is not set; " + HOW_TO_START)
    with httpx.Client(transport=httpx.HTTPTransport(uds=_socket(docker_host)), timeout=5) as c:
        if c.get(f"http://docker/images/{image}/json").status_code != 200:
            pytest.fail(f"test image {image} is not in dockerd at {docker_host}; " + HOW_TO_START)
    return image


class Engine:
    """Raw Engine API access for assertions (independent of the provider)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=_socket(url)), base_url="http://docker", timeout=30)

    def inspect(self, name: str) -> dict[str, Any] | None:
        r = self.http.get(f"/containers/{name}/json")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def containers(self, *labels: str) -> list[dict[str, Any]]:
        r = self.http.get("/containers/json", params={"all": "1", "filters": json.dumps({"label": list(labels)})})
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out

    def remove(self, name: str) -> None:
        self.http.delete(f"/containers/{name}", params={"force": "true", "v": "true"})

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cli = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
        return subprocess.run([cli, "-H", self.url, *args], capture_output=True, text=True, check=check, timeout=60)

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="session")
def engine(docker_host: str) -> Iterator[Engine]:
    e = Engine(docker_host)
    yield e
    e.close()


@pytest.fixture
def controller_id(engine: Engine) -> Iterator[str]:
    cid = f"test-{uuid.uuid4().hex[:10]}"
    yield cid
    for row in engine.containers(f"{LABEL_CONTROLLER}={cid}"):
        engine.remove(row["Id"])


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex[:8]


Settings = Callable[..., ProviderSettings]


@pytest.fixture
def make_settings(docker_host: str, controller_id: str) -> Settings:
    def make(hosts: list[dict[str, Any]] | None = None, **options: Any) -> ProviderSettings:
        opts: dict[str, Any] = {"hosts": hosts or [{"name": "local", "url": docker_host}], **options}
        return ProviderSettings(name="docker-test", type="docker", controller_id=controller_id, options=opts)

    return make


@pytest.fixture
async def provider(make_settings: Settings) -> AsyncIterator[DockerProvider]:
    p = DockerProvider(make_settings())
    yield p
    await p.close()


@pytest.fixture
async def provider_again(make_settings: Settings) -> AsyncIterator[DockerProvider]:
    p = DockerProvider(make_settings())
    yield p
    await p.close()


MakeLaunch = Callable[..., LaunchSpec]


@pytest.fixture
def make_launch(docker_image: str, controller_id: str, token: str) -> MakeLaunch:
    def make(
        name: str,
        *,
        run_seconds: float = 30,
        script: str | None = None,
        options: dict[str, Any] | None = None,
        files: tuple[CredentialFile, ...] | None = None,
        pool: str = "pool-a",
    ) -> LaunchSpec:
        full = f"{name}-{token}"
        if script is None:
            script = f"cat {CRED_PATH} >/dev/null && sleep {run_seconds}"
        return LaunchSpec(
            name=full,
            pool=pool,
            image=docker_image,
            command=("/bin/sh", "-c", script),
            env={"RUNNER_NAME": full, "FORGE_URL": "http://127.0.0.1:3000"},
            files=files if files is not None else (CredentialFile(CRED_PATH, Secret(f"secret-{uuid.uuid4().hex}")),),
            labels={
                LABEL_CONTROLLER: controller_id,
                LABEL_POOL: pool,
                LABEL_RUNNER_NAME: full,
                LABEL_RUNNER_ID: "42",
                LABEL_JOB_ID: "7",
                LABEL_CREATED_AT: "1700000000.000",
            },
            options={"network_mode": "none", "stop_timeout": 1, **(options or {})},
        )

    return make


@pytest.fixture
def exit_timeout() -> float:
    return 30.0
