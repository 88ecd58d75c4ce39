"""Fixtures: a fake Kubernetes API server on 127.0.0.1 and providers pointed at it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from providers.kubernetes import KubernetesProvider
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_CREATED_AT,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    LABEL_RUNNER_NAME,
    CredentialFile,
    LaunchSpec,
    ProviderSettings,
)
from scaler.secrets import Secret
from scaler.testing.fake_kube import FakeKube

CONTROLLER = "rs"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    with FakeKube(kubelet=True, bookmark_interval=0.2) as fake:
        yield fake


ProviderFactory = Callable[..., KubernetesProvider]


@pytest.fixture
async def make_provider(kube: FakeKube) -> AsyncIterator[ProviderFactory]:
    made: list[KubernetesProvider] = []

    def make(
        controller_id: str = CONTROLLER, *, clock: Callable[[], float] = time.time, **options: Any
    ) -> KubernetesProvider:
        opts = {"api_url": kube.url, "watch_backoff_initial": 0.05, "watch_backoff_max": 0.2, **options}
        settings = ProviderSettings(name="k8s", type="kubernetes", controller_id=controller_id, options=opts)
        p = KubernetesProvider(settings, clock=clock)
        made.append(p)
        return p

    yield make
    for p in made:
        await p.close()


def launch(
    name: str,
    *,
    run_seconds: float = 30,
    pool: str = "small",
    controller: str = CONTROLLER,
    files: bool = True,
    **options: Any,
) -> LaunchSpec:
    return LaunchSpec(
        name=name,
        pool=pool,
        image="registry.local/runner:1",
        command=("sh", "-c", f"sleep {run_seconds:g}"),
        env={"RUNNER_NAME": name},
        files=(CredentialFile("/data/.runner", Secret(f"runner-file-for-{name}")),) if files else (),
        labels={
            LABEL_CONTROLLER: controller,
            LABEL_POOL: pool,
            LABEL_RUNNER_NAME: f"{name} (runner)",
            LABEL_RUNNER_ID: "4242",
            LABEL_CREATED_AT: "2026-11-22T05:00:00+00:00",
        },
        options=options,
    )
