"""Pod phases and container states → instance status, every failure reason,
driven through the fake kubelet hooks and read back by the provider."""

from __future__ import annotations

import asyncio
import time

import pytest

from providers.kubernetes import KubernetesProvider, secret_name, translate
from scaler.errors import ProviderPermanentError
from scaler.provider import LABEL_RUNNER_ID, LABEL_RUNNER_NAME, InstanceStatus
from scaler.testing.fake_kube import FakeKube, secret_data
from tests.kubernetes.conftest import ProviderFactory, launch

pytestmark = pytest.mark.kubernetes


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def manual(kube: FakeKube) -> FakeKube:
    kube.kubelet = False  # the tests move the Pods by hand
    return kube


async def test_pod_secret_and_stamps(kube: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider()
    info = await provider.create(launch("r-stamps"))
    assert info.labels[LABEL_RUNNER_NAME] == "r-stamps (runner)"  # from the annotation
    assert info.labels[LABEL_RUNNER_ID] == "4242"
    pod = kube.get("pods", "default", "r-stamps")
    secret = kube.get("secrets", "default", secret_name("r-stamps"))
    assert pod is not None and secret is not None
    (ref,) = secret["metadata"]["ownerReferences"]
    assert ref["kind"] == "Pod" and ref["uid"] == pod["metadata"]["uid"] and ref["name"] == "r-stamps"
    assert secret_data(secret) == {"file-0": "runner-file-for-r-stamps"}
    assert pod["spec"]["restartPolicy"] == "Never"
    # Deleting the Pod garbage-collects the Secret.
    await provider.delete("r-stamps")
    assert kube.get("secrets", "default", secret_name("r-stamps")) is None
    assert kube.requests.count(("DELETE", "/api/v1/namespaces/default/pods/r-stamps")) == 1


async def test_pod_waits_for_its_secret_then_runs(manual: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.create(launch("r-run"))
    info = await provider.get("r-run")
    assert info is not None and info.status is InstanceStatus.STARTING
    manual.set_pod_phase("default", "r-run", "Running")
    info = await provider.get("r-run")
    assert info is not None and info.status is InstanceStatus.RUNNING and info.host == "fake-node"


async def test_kubelet_holds_pod_until_secret_exists(kube: FakeKube) -> None:
    kube.create(
        "pods",
        "default",
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "runner", "image": "x"}],
                "volumes": [{"name": "c", "secret": {"secretName": "s"}}],
            },
        },
    )
    await asyncio.sleep(0.3)
    assert kube.get("pods", "default", "p")["status"]["phase"] == "Pending"  # type: ignore[index]
    kube.create("secrets", "default", {"metadata": {"name": "s"}, "data": {}})
    await asyncio.sleep(0.3)
    assert kube.get("pods", "default", "p")["status"]["phase"] == "Running"  # type: ignore[index]


@pytest.mark.parametrize(
    ("phase", "exit_code", "container_reason", "status", "reason"),
    [
        ("Succeeded", 0, None, InstanceStatus.EXITED, None),
        ("Failed", 3, None, InstanceStatus.EXITED, "Error"),
        ("Failed", 137, "OOMKilled", InstanceStatus.FAILED, "OOMKilled"),
        ("Failed", 128, "ContainerCannotRun", InstanceStatus.FAILED, "ContainerCannotRun"),
    ],
)
async def test_exits(
    manual: FakeKube,
    make_provider: ProviderFactory,
    phase: str,
    exit_code: int,
    container_reason: str | None,
    status: InstanceStatus,
    reason: str | None,
) -> None:
    provider = make_provider()
    await provider.create(launch("r-exit"))
    manual.set_pod_phase("default", "r-exit", phase, exit_code=exit_code, container_reason=container_reason)
    info = await provider.get("r-exit")
    assert info is not None
    assert (info.status, info.exit_code, info.reason) == (status, exit_code, reason)


@pytest.mark.parametrize("waiting", ["ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"])
async def test_stuck_waiting_fails_after_boot_timeout(
    manual: FakeKube, make_provider: ProviderFactory, waiting: str
) -> None:
    clock = Clock()
    provider = make_provider(clock=clock)
    await provider.create(launch("r-wait", boot_timeout=60))
    manual.set_waiting("default", "r-wait", waiting, "back-off pulling image")
    info = await provider.get("r-wait")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.STARTING, waiting)
    clock.offset = 61
    info = await provider.get("r-wait")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.FAILED, waiting)


async def test_invalid_image_name_fails_at_once(manual: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.create(launch("r-inv"))
    manual.set_waiting("default", "r-inv", "InvalidImageName")
    info = await provider.get("r-inv")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.FAILED, "InvalidImageName")


async def test_unschedulable_fails_after_boot_timeout(manual: FakeKube, make_provider: ProviderFactory) -> None:
    clock = Clock()
    provider = make_provider(clock=clock, boot_timeout=120)  # the provider-wide default
    await provider.create(launch("r-unsched"))
    manual.set_unschedulable("default", "r-unsched", "0/3 nodes are available: 3 Insufficient cpu.")
    info = await provider.get("r-unsched")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.STARTING, "Unschedulable")
    clock.offset = 121
    info = await provider.get("r-unsched")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.FAILED, "Unschedulable")


async def test_pending_past_boot_timeout_without_reason(manual: FakeKube, make_provider: ProviderFactory) -> None:
    clock = Clock()
    provider = make_provider(clock=clock)
    await provider.create(launch("r-slow", boot_timeout=10))
    clock.offset = 11
    info = await provider.get("r-slow")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.FAILED, "BootTimeout")


async def test_eviction(manual: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.create(launch("r-evict"))
    manual.set_pod_phase("default", "r-evict", "Running")
    manual.evict("default", "r-evict")
    info = await provider.get("r-evict")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.FAILED, "Evicted")


async def test_node_loss(manual: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.create(launch("r-lost"))
    manual.set_pod_phase("default", "r-lost", "Running")
    manual.evict("default", "r-lost", node_lost=True)
    info = await provider.get("r-lost")
    assert info is not None and (info.status, info.reason) == (InstanceStatus.FAILED, "NodeLost")


def test_disruption_target_while_running() -> None:
    pod = {
        "metadata": {"name": "p", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}],
            "containerStatuses": [{"name": "runner", "state": {"running": {}}}],
        },
    }
    info = translate(pod, now=time.time(), default_boot_timeout=300)
    assert (info.status, info.reason) == (InstanceStatus.FAILED, "PreemptionByScheduler")


def test_runner_exit_counts_even_when_a_sidecar_runs() -> None:
    pod = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "sidecar", "state": {"running": {}}},
                {"name": "runner", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            ],
        },
    }
    info = translate(pod, now=time.time(), default_boot_timeout=300)
    assert (info.status, info.exit_code) == (InstanceStatus.EXITED, 0)


async def test_create_adopts_existing_pod_and_restores_missing_secret(
    manual: FakeKube, make_provider: ProviderFactory
) -> None:
    provider = make_provider()
    await provider.create(launch("r-adopt"))
    pod = manual.get("pods", "default", "r-adopt")
    manual.delete("secrets", "default", secret_name("r-adopt"))  # as if we crashed between the two creates
    again = make_provider()
    info = await again.create(launch("r-adopt"))
    assert info.name == "r-adopt"
    assert manual.get("pods", "default", "r-adopt")["metadata"]["uid"] == pod["metadata"]["uid"]  # type: ignore[index]
    assert manual.get("secrets", "default", secret_name("r-adopt")) is not None
    assert manual.creations[("pods", "default", "r-adopt")] == 1


async def test_stale_secret_of_an_earlier_pod_is_replaced(manual: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider()
    await provider.create(launch("r-stale"))
    old = manual.get("secrets", "default", secret_name("r-stale"))
    assert old is not None
    # The old Pod is gone but the Secret survived (its owner reference was dropped).
    old["metadata"].pop("ownerReferences")
    old["metadata"].pop("resourceVersion")
    manual.replace("secrets", "default", secret_name("r-stale"), old)
    manual.delete("pods", "default", "r-stale")
    await provider.create(launch("r-stale"))
    pod = manual.get("pods", "default", "r-stale")
    secret = manual.get("secrets", "default", secret_name("r-stale"))
    assert pod is not None and secret is not None
    assert secret["metadata"]["ownerReferences"][0]["uid"] == pod["metadata"]["uid"]


async def test_foreign_pod_of_the_same_name_is_not_adopted(manual: FakeKube, make_provider: ProviderFactory) -> None:
    manual.create("pods", "default", {"metadata": {"name": "r-foreign"}, "spec": {"containers": []}})
    provider: KubernetesProvider = make_provider()
    with pytest.raises(ProviderPermanentError, match="not managed"):
        await provider.create(launch("r-foreign"))
    assert await provider.get("r-foreign") is None


async def test_namespace_override_must_be_declared(kube: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider(extra_namespaces=["ci"])
    await provider.create(launch("r-ns", namespace="ci"))
    assert kube.get("pods", "ci", "r-ns") is not None
    assert {i.name for i in await provider.list()} == {"r-ns"}
    await provider.delete("r-ns")
    assert kube.get("pods", "ci", "r-ns") is None
    with pytest.raises(ProviderPermanentError, match="extra_namespaces"):
        await provider.create(launch("r-ns2", namespace="other"))


async def test_api_errors_are_classified(kube: FakeKube, make_provider: ProviderFactory) -> None:
    from scaler.errors import ProviderTemporaryError

    provider = make_provider()
    kube.fail_requests = True
    with pytest.raises(ProviderTemporaryError):
        await provider.list()
    kube.fail_requests = False
    kube.allowed = set()
    with pytest.raises(ProviderPermanentError, match="403"):
        await provider.create(launch("r-forbidden"))


async def test_http_hooks(manual: FakeKube) -> None:
    import httpx

    manual.create("pods", "default", {"metadata": {"name": "h"}, "spec": {"containers": [{"name": "runner"}]}})
    async with httpx.AsyncClient(base_url=manual.url) as http:
        r = await http.post("/fake/v1/namespaces/default/pods/h/phase", json={"phase": "Succeeded", "exit_code": 0})
        assert r.status_code == 200 and r.json()["status"]["phase"] == "Succeeded"
        assert (await http.post("/fake/v1/namespaces/default/pods/h/nope")).status_code == 404
        assert (await http.post("/fake/v1/namespaces/default/pods/missing/evict")).status_code == 404
