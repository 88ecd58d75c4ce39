"""The Pod watch: events, bookmarks, re-list after 410 Gone, reconnect after a
dropped connection and after API errors (with back-off)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from providers.kubernetes import KubernetesProvider
from scaler.provider import InstanceInfo, InstanceStatus
from scaler.testing.fake_kube import FakeKube, LabelSelector
from tests.kubernetes.conftest import ProviderFactory, launch

pytestmark = pytest.mark.kubernetes


class Collector:
    def __init__(self, provider: KubernetesProvider) -> None:
        self.seen: list[InstanceInfo] = []
        self._task = asyncio.create_task(self._run(provider.watch()))

    async def _run(self, it: AsyncIterator[InstanceInfo]) -> None:
        async for info in it:
            self.seen.append(info)

    async def wait_for(self, name: str, status: InstanceStatus, timeout: float = 5.0) -> InstanceInfo:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for info in self.seen:
                if info.name == name and info.status is status:
                    return info
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {status} for {name}; saw {[(i.name, i.status) for i in self.seen]}")

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def watched(
    kube: FakeKube, make_provider: ProviderFactory
) -> AsyncIterator[tuple[KubernetesProvider, Collector]]:
    kube.kubelet = False
    provider = make_provider()
    collector = Collector(provider)
    yield provider, collector
    await collector.stop()


async def test_watch_reports_exit(kube: FakeKube, make_provider: ProviderFactory) -> None:
    provider = make_provider()
    collector = Collector(provider)
    await provider.create(launch("w-exit", run_seconds=0.3))
    await collector.wait_for("w-exit", InstanceStatus.RUNNING)
    info = await collector.wait_for("w-exit", InstanceStatus.EXITED)
    assert info.exit_code == 0
    await collector.stop()


async def test_watch_only_sees_this_controller(
    kube: FakeKube, watched: tuple[KubernetesProvider, Collector], make_provider: ProviderFactory
) -> None:
    provider, collector = watched
    other = make_provider("other")
    await other.create(launch("w-other", controller="other"))
    await provider.create(launch("w-mine"))
    await collector.wait_for("w-mine", InstanceStatus.STARTING)
    assert "w-other" not in {i.name for i in collector.seen}


async def test_relist_after_410_gone(kube: FakeKube, watched: tuple[KubernetesProvider, Collector]) -> None:
    provider, collector = watched
    await provider.create(launch("w-410"))
    await collector.wait_for("w-410", InstanceStatus.STARTING)
    kube.compact()
    kube.drop_watches()  # the reconnect asks for a compacted version → ERROR 410
    kube.set_pod_phase("default", "w-410", "Running")
    await collector.wait_for("w-410", InstanceStatus.RUNNING)
    assert provider.watch_relists >= 1
    kube.set_pod_phase("default", "w-410", "Succeeded", exit_code=0)
    await collector.wait_for("w-410", InstanceStatus.EXITED)


async def test_reconnect_after_dropped_connection(
    kube: FakeKube, watched: tuple[KubernetesProvider, Collector]
) -> None:
    provider, collector = watched
    await provider.create(launch("w-drop"))
    await collector.wait_for("w-drop", InstanceStatus.STARTING)
    restarts = provider.watch_restarts
    kube.drop_watches()
    await asyncio.sleep(0.1)
    kube.set_pod_phase("default", "w-drop", "Running")
    await collector.wait_for("w-drop", InstanceStatus.RUNNING)
    assert provider.watch_restarts > restarts
    assert provider.watch_relists == 0  # resumed from its resourceVersion, no re-list


async def test_reconnect_with_backoff_while_api_fails(
    kube: FakeKube, watched: tuple[KubernetesProvider, Collector]
) -> None:
    provider, collector = watched
    await provider.create(launch("w-503"))
    await collector.wait_for("w-503", InstanceStatus.STARTING)
    kube.fail_requests = True
    kube.drop_watches()
    before = len(kube.requests)
    await asyncio.sleep(1.0)
    attempts = len(kube.requests) - before
    assert 1 <= attempts <= 15  # backed off (0.05 s doubling to 0.2 s), not a hot loop
    kube.fail_requests = False
    kube.set_pod_phase("default", "w-503", "Failed", exit_code=1)
    await collector.wait_for("w-503", InstanceStatus.EXITED)


async def test_fake_sends_bookmarks_and_410(kube: FakeKube) -> None:
    kube.create("pods", "default", {"metadata": {"name": "b", "labels": {"x": "1"}}, "spec": {}})
    url = f"{kube.url}/api/v1/namespaces/default/pods"
    async with httpx.AsyncClient(timeout=5) as http:
        params = {"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": "1", "timeoutSeconds": "1"}
        types = []
        async with http.stream("GET", url, params=params) as resp:
            async for line in resp.aiter_lines():
                if line:
                    types.append(json.loads(line)["type"])
                    if "BOOKMARK" in types:
                        break
        assert "BOOKMARK" in types
        kube.compact()
        async with http.stream("GET", url, params={"watch": "1", "resourceVersion": "1"}) as resp:
            events = [json.loads(line) async for line in resp.aiter_lines() if line]
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410


def test_label_selector_parsing() -> None:
    labels = {"app": "x", "tier": "web"}
    assert LabelSelector("app=x,tier in (web,db)").matches(labels)
    assert LabelSelector("app==x,!missing").matches(labels)
    assert not LabelSelector("app!=x").matches(labels)
    assert not LabelSelector("tier notin (web)").matches(labels)
    assert LabelSelector("tier").matches(labels)
    assert not LabelSelector("nope").matches(labels)
    assert LabelSelector("").matches({})
