"""Docker-specific behaviour against a real dockerd."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from providers.docker import LABEL_HOST, LABEL_PROVIDER, DockerProvider
from providers.docker._client import HostUnavailable
from scaler.errors import ConfigError, ProviderPermanentError, ProviderTemporaryError
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_CREATED_AT,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    LABEL_RUNNER_NAME,
    CredentialFile,
    InstanceStatus,
    Provider,
)
from scaler.secrets import Secret
from tests.contract.provider_contract import wait_for_status
from tests.docker._proxy import SocketProxy
from tests.docker.conftest import CRED_PATH, Engine, MakeLaunch, Settings

pytestmark = pytest.mark.docker


def test_is_a_provider(provider: DockerProvider) -> None:
    assert isinstance(provider, Provider)
    assert DockerProvider.settings_model.model_config["extra"] == "forbid"
    assert DockerProvider.pool_options_model.model_config["frozen"] is True


def test_bad_settings_name_the_key(make_settings: Settings) -> None:
    with pytest.raises(ConfigError) as err:
        DockerProvider(make_settings(hosts=[{"name": "a", "url": "http://127.0.0.1:2375"}]))
    assert "providers[docker-test].options.hosts.0.url" in str(err.value)


async def test_resource_limits_applied(provider: DockerProvider, make_launch: MakeLaunch, engine: Engine) -> None:
    spec = make_launch("limits", options={"resources": {"cpus": 0.5, "memory": "64m", "pids": 64, "shm_size": "8m"}})
    await provider.create(spec)
    hc = engine.inspect(spec.name)["HostConfig"]  # type: ignore[index]
    assert hc["NanoCpus"] == 500_000_000
    assert hc["Memory"] == 64 * 1024 * 1024
    assert hc["MemorySwap"] == 64 * 1024 * 1024  # no swap on top
    assert hc["PidsLimit"] == 64
    assert hc["ShmSize"] == 8 * 1024 * 1024
    assert hc["NetworkMode"] == "none"
    assert hc["Privileged"] is False
    assert hc["RestartPolicy"]["Name"] == "no"
    # and the kernel enforces the pids limit inside
    out = engine.cli("exec", spec.name, "cat", "/sys/fs/cgroup/pids/pids.max", check=False)
    if out.returncode == 0:
        assert out.stdout.strip() == "64"
    await provider.delete(spec.name)


async def test_credential_file_mode_0600_and_not_in_env(
    provider: DockerProvider, make_launch: MakeLaunch, engine: Engine
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    nested = "/home/runner/.config/act/.runner"
    spec = make_launch(
        "cred",
        files=(CredentialFile(CRED_PATH, Secret(secret)), CredentialFile(nested, Secret(secret + "-2"))),
        options={"user": "1000:1000"},
    )
    await provider.create(spec)
    assert engine.cli("exec", spec.name, "stat", "-c", "%a %u %g", CRED_PATH).stdout.split() == ["600", "1000", "1000"]
    assert engine.cli("exec", spec.name, "cat", CRED_PATH).stdout == secret
    assert engine.cli("exec", spec.name, "stat", "-c", "%a %u", nested).stdout.split() == ["600", "1000"]
    assert engine.cli("exec", spec.name, "stat", "-c", "%a %u", "/home/runner/.config").stdout.split() == [
        "700",
        "1000",
    ]
    # an existing directory keeps its mode and owner
    assert engine.cli("exec", spec.name, "stat", "-c", "%a %u", "/home/runner").stdout.split() == ["755", "1000"]
    data = engine.inspect(spec.name)
    assert data is not None
    assert not any(secret in e for e in data["Config"]["Env"])
    assert secret not in json.dumps(data)
    await provider.delete(spec.name)


async def test_labels_stamped(
    provider: DockerProvider, make_launch: MakeLaunch, engine: Engine, controller_id: str
) -> None:
    spec = make_launch("labels", options={"extra_labels": {"team": "infra"}})
    info = await provider.create(spec)
    labels = engine.inspect(spec.name)["Config"]["Labels"]  # type: ignore[index]
    assert labels[LABEL_CONTROLLER] == controller_id
    assert labels[LABEL_POOL] == "pool-a"
    assert labels[LABEL_RUNNER_NAME] == spec.name
    assert labels[LABEL_RUNNER_ID] == "42"
    assert labels[LABEL_CREATED_AT] == "1700000000.000"
    assert labels[LABEL_PROVIDER] == "docker-test"
    assert labels[LABEL_HOST] == "local"
    assert labels["team"] == "infra"
    assert info.created_at == 1700000000.0
    assert info.host == "local"
    assert info.status is InstanceStatus.RUNNING
    await provider.delete(spec.name)


async def test_exit_code_reported(provider: DockerProvider, make_launch: MakeLaunch) -> None:
    spec = make_launch("exit3", script="exit 3")
    await provider.create(spec)
    info = await wait_for_status(provider, spec.name, {InstanceStatus.EXITED}, 30)
    assert info.exit_code == 3 and info.reason is None
    listed = {i.name: i for i in await provider.list()}
    assert listed[spec.name].exit_code == 3
    await provider.delete(spec.name)


async def test_oom_reported(provider: DockerProvider, make_launch: MakeLaunch) -> None:
    spec = make_launch(
        "oom",
        script="x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo ${#x}",
        options={"resources": {"memory": "24m"}},
    )
    await provider.create(spec)
    info = await wait_for_status(provider, spec.name, {InstanceStatus.FAILED, InstanceStatus.EXITED}, 60)
    assert info.status is InstanceStatus.FAILED, info
    assert info.reason == "OOMKilled"
    assert info.exit_code == 137
    await provider.delete(spec.name)


async def test_start_failure_is_permanent(provider: DockerProvider, make_launch: MakeLaunch) -> None:
    spec = make_launch("badcmd")
    spec = type(spec)(**{**{f: getattr(spec, f) for f in spec.__slots__}, "command": ("/no/such/binary",)})
    with pytest.raises(ProviderPermanentError):
        await provider.create(spec)
    await provider.delete(spec.name)


async def test_missing_image_with_pull_never_is_permanent(provider: DockerProvider, make_launch: MakeLaunch) -> None:
    spec = make_launch("noimage", options={"pull": "never"})
    spec = type(spec)(**{**{f: getattr(spec, f) for f in spec.__slots__}, "image": "runner-scaler-test/absent:1"})
    with pytest.raises(ProviderPermanentError):
        await provider.create(spec)
    assert await provider.get(spec.name) is None


async def _next_for(it: AsyncIterator[Any], name: str, wanted: set[InstanceStatus], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        info = await asyncio.wait_for(it.__anext__(), timeout=max(0.1, deadline - time.monotonic()))
        if info.name == name and info.status in wanted:
            return info


async def test_watch_reports_exit_from_events(make_settings: Settings, make_launch: MakeLaunch) -> None:
    # periodic resync far away: only the events stream can deliver this in time
    p = DockerProvider(make_settings(resync_interval=3600))
    try:
        it = p.watch().__aiter__()
        spec = make_launch("watch", script="sleep 1; exit 5")
        await p.create(spec)
        info = await _next_for(it, spec.name, {InstanceStatus.EXITED}, 30)
        assert info.exit_code == 5
        await p.delete(spec.name)
    finally:
        await p.close()


async def test_exit_seen_when_events_stream_is_cut(
    make_settings: Settings, make_launch: MakeLaunch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream stalls (no events arrive): get/list still see the exit; when
    the stream drops and comes back, the missed exit reaches watch()."""
    p = DockerProvider(make_settings(resync_interval=3600, reconnect_max_delay=0.5))
    client = p._hosts["local"].client
    real_events = client.events
    cut = asyncio.Event()

    async def stalled(filters: Any, since: Any) -> AsyncIterator[dict[str, Any]]:
        await cut.wait()
        raise HostUnavailable("stream cut")
        yield {}  # pragma: no cover

    monkeypatch.setattr(client, "events", stalled)
    try:
        it = p.watch().__aiter__()
        spec = make_launch("cut", script="exit 4")
        await p.create(spec)
        info = await wait_for_status(p, spec.name, {InstanceStatus.EXITED}, 30)
        assert info.exit_code == 4
        assert {i.name: i.exit_code for i in await p.list()}[spec.name] == 4

        # a second exit while the stream is down: detected on reconnect (re-list)
        spec2 = make_launch("cut2", script="sleep 0.5; exit 6")
        await p.create(spec2)
        await asyncio.sleep(1.5)
        monkeypatch.setattr(client, "events", real_events)
        cut.set()
        info2 = await _next_for(it, spec2.name, {InstanceStatus.EXITED}, 30)
        assert info2.exit_code == 6
    finally:
        await p.close()


async def test_adopts_after_new_provider_object(
    make_settings: Settings, make_launch: MakeLaunch, engine: Engine
) -> None:
    spec = make_launch("adopt")
    first = DockerProvider(make_settings())
    info = await first.create(spec)
    cid = engine.inspect(spec.name)["Id"]  # type: ignore[index]
    await first.close()
    second = DockerProvider(make_settings())
    try:
        again = await second.create(spec)
        assert again.name == info.name and again.status is InstanceStatus.RUNNING
        assert engine.inspect(spec.name)["Id"] == cid  # type: ignore[index]
        assert len([r for r in engine.containers(f"{LABEL_RUNNER_NAME}={spec.name}")]) == 1
        await second.delete(spec.name)
        assert engine.inspect(spec.name) is None
    finally:
        await second.close()


async def test_adopt_finishes_a_create_that_never_started(
    provider: DockerProvider, make_launch: MakeLaunch, engine: Engine, docker_image: str
) -> None:
    """A crash between create and start leaves a 'created' container: create() of
    the same name uploads the files and starts it."""
    spec = make_launch("half")
    opts = provider.pool_options(spec.options)
    body = provider._body(spec, opts, {**provider._stamps(spec, opts), LABEL_HOST: "local"})
    r = engine.http.post("/containers/create", params={"name": spec.name}, json=body)
    assert r.status_code == 201, r.text
    assert engine.inspect(spec.name)["State"]["Status"] == "created"  # type: ignore[index]
    info = await provider.create(spec)
    assert info.status is InstanceStatus.RUNNING
    assert engine.cli("exec", spec.name, "stat", "-c", "%a", CRED_PATH).stdout.strip() == "600"
    await provider.delete(spec.name)


async def test_foreign_container_with_same_name_is_not_touched(
    provider: DockerProvider, make_launch: MakeLaunch, engine: Engine, docker_image: str
) -> None:
    spec = make_launch("foreign")
    r = engine.http.post(
        "/containers/create", params={"name": spec.name}, json={"Image": docker_image, "Cmd": ["true"]}
    )
    assert r.status_code == 201
    try:
        with pytest.raises(ProviderPermanentError):
            await provider.create(spec)
        assert await provider.get(spec.name) is None
        await provider.delete(spec.name)  # not ours: left alone
        assert engine.inspect(spec.name) is not None
    finally:
        engine.remove(spec.name)


async def test_placement_spread(make_settings: Settings, make_launch: MakeLaunch, docker_host: str) -> None:
    hosts = [{"name": "a", "url": docker_host}, {"name": "b", "url": docker_host}]
    p = DockerProvider(make_settings(hosts=hosts, placement="spread"))
    try:
        infos = [await p.create(make_launch(f"spread{i}")) for i in range(4)]
        assert [i.host for i in infos] == ["a", "b", "a", "b"]
        listed = await p.list()
        assert sorted(i.host or "" for i in listed) == ["a", "a", "b", "b"]
        assert len({i.name for i in listed}) == 4
        for i in infos:
            await p.delete(i.name)
        assert await p.list() == []
    finally:
        await p.close()


async def test_placement_pack_with_cap(make_settings: Settings, make_launch: MakeLaunch, docker_host: str) -> None:
    hosts = [{"name": "a", "url": docker_host, "max_instances": 3}, {"name": "b", "url": docker_host}]
    p = DockerProvider(make_settings(hosts=hosts, placement="pack", max_per_host=2))
    try:
        infos = [await p.create(make_launch(f"pack{i}")) for i in range(5)]
        assert [i.host for i in infos] == ["a", "a", "a", "b", "b"]
        with pytest.raises(ProviderTemporaryError, match="cap"):
            await p.create(make_launch("pack-over"))
        # an exited runner frees its slot
        await p.delete(infos[0].name)
        assert (await p.create(make_launch("pack5"))).host == "a"
    finally:
        await p.close()


async def test_pool_restricted_to_hosts(make_settings: Settings, make_launch: MakeLaunch, docker_host: str) -> None:
    hosts = [{"name": "a", "url": docker_host}, {"name": "b", "url": docker_host}]
    p = DockerProvider(make_settings(hosts=hosts))
    try:
        infos = [await p.create(make_launch(f"only-b{i}", options={"hosts": ["b"]})) for i in range(2)]
        assert {i.host for i in infos} == {"b"}
        with pytest.raises(ProviderPermanentError):
            await p.create(make_launch("nowhere", options={"hosts": ["zzz"]}))
    finally:
        await p.close()


async def test_unhealthy_host_skipped_then_back(
    make_settings: Settings, make_launch: MakeLaunch, docker_host: str, tmp_path: Path
) -> None:
    link = tmp_path / "d.sock"  # absent for now: that host does not answer
    hosts = [{"name": "down", "url": f"unix://{link}"}, {"name": "up", "url": docker_host}]
    p = DockerProvider(make_settings(hosts=hosts, health_interval=0.3, reconnect_max_delay=0.5))
    try:
        infos = [await p.create(make_launch(f"skip{i}")) for i in range(3)]
        assert {i.host for i in infos} == {"up"}
        assert not p._hosts["down"].healthy
        findings = await p.check({})
        levels = {f.subject.rsplit(" ", 1)[-1]: f.level for f in findings}
        assert levels == {"down": "error", "up": "ok"}
        # the host comes back (the same engine under the second name)
        os.symlink(docker_host[len("unix://") :], link)
        deadline = time.monotonic() + 30
        while not p._hosts["down"].healthy and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert p._hosts["down"].healthy
        assert (await p.create(make_launch("skip-back"))).host == "down"  # spread: it has none
    finally:
        await p.close()


async def test_list_keeps_instances_of_a_host_that_went_down(
    make_settings: Settings, make_launch: MakeLaunch, docker_host: str, tmp_path: Path
) -> None:
    proxy = SocketProxy(tmp_path / "p.sock", docker_host[len("unix://") :])
    await proxy.start()
    p = DockerProvider(make_settings(hosts=[{"name": "flaky", "url": proxy.url}], health_interval=0.3))
    try:
        spec = make_launch("flaky", script="sleep 2; exit 9")
        await p.create(spec)
        await proxy.cut()
        listed = await p.list()  # stale, not empty: the core must not think it is gone
        assert [i.name for i in listed] == [spec.name]
        got = await p.get(spec.name)
        assert got is not None and got.status is listed[0].status
        with pytest.raises(ProviderTemporaryError):
            await p.create(make_launch("flaky2"))
        with pytest.raises(ProviderTemporaryError):
            await p.delete(spec.name)
        await asyncio.sleep(2.5)  # it exits while the host is unreachable
        await proxy.start()
        # reconciled when the host returns: the exit is seen, then it can be deleted
        info = await wait_for_status(p, spec.name, {InstanceStatus.EXITED}, 30)
        assert info.exit_code == 9
        await p.delete(spec.name)
        assert await p.list() == []
    finally:
        await p.close()
        await proxy.cut()


async def test_events_connection_dropped_then_reconnected(
    make_settings: Settings, make_launch: MakeLaunch, docker_host: str, tmp_path: Path
) -> None:
    """The engine connection (events stream included) is cut for real; the exit
    that happens meanwhile reaches watch() after the reconnect."""
    proxy = SocketProxy(tmp_path / "p.sock", docker_host[len("unix://") :])
    await proxy.start()
    p = DockerProvider(
        make_settings(
            hosts=[{"name": "h", "url": proxy.url}], resync_interval=3600, health_interval=0.3, reconnect_max_delay=0.5
        )
    )
    try:
        it = p.watch().__aiter__()
        spec = make_launch("drop", script="sleep 1; exit 2")
        await p.create(spec)
        await proxy.cut()
        await asyncio.sleep(1.5)
        await proxy.start()
        info = await _next_for(it, spec.name, {InstanceStatus.EXITED}, 30)
        assert info.exit_code == 2
        # and the stream is live again for later exits
        spec2 = make_launch("drop2", script="sleep 0.5; exit 3")
        await p.create(spec2)
        assert (await _next_for(it, spec2.name, {InstanceStatus.EXITED}, 30)).exit_code == 3
    finally:
        await p.close()
        await proxy.cut()


async def test_check(provider: DockerProvider, docker_image: str) -> None:
    findings = await provider.check(
        {
            "good": {"image": docker_image, "network_mode": "host"},
            "missing": {"image": "runner-scaler-test/absent:1", "pull": "never"},
            "dind": {"privileged": True},
            "broken": {"resources": {"memory": "lots"}},
        }
    )
    text = "\n".join(str(f) for f in findings)
    assert any(f.level == "ok" and "API" in f.message for f in findings), text
    assert any(f.level == "ok" and "pool good" in f.subject and "present" in f.message for f in findings), text
    assert any(f.level == "error" and "pool missing" in f.subject for f in findings), text
    assert any(f.level == "warning" and "pool dind" in f.subject for f in findings), text
    assert any(f.level == "error" and "pool broken" in f.subject and "memory" in f.message for f in findings), text


async def test_privileged_opt_in(provider: DockerProvider, make_launch: MakeLaunch, engine: Engine) -> None:
    """Off by default (see test_resource_limits_applied); when a pool opts in the
    container is created privileged. This machine cannot start a privileged
    container (the test runs without the capabilities to grant), so the start
    failure must come back as permanent and the container be left for inspection."""
    spec = make_launch("priv", options={"privileged": True, "network_mode": "host"})
    try:
        await provider.create(spec)
    except ProviderPermanentError as exc:
        assert "caps" in str(exc) or "permitted" in str(exc)
    hc = engine.inspect(spec.name)["HostConfig"]  # type: ignore[index]
    assert hc["Privileged"] is True and hc["NetworkMode"] == "host"
    await provider.delete(spec.name)


async def test_delete_removes_anonymous_volumes(
    provider: DockerProvider, make_launch: MakeLaunch, engine: Engine
) -> None:
    spec = make_launch("vol", options={"mounts": [{"type": "tmpfs", "target": "/work"}]})
    await provider.create(spec)
    mounts = engine.inspect(spec.name)["HostConfig"]["Mounts"]  # type: ignore[index]
    assert mounts[0]["Type"] == "tmpfs"
    await provider.delete(spec.name)
    assert engine.inspect(spec.name) is None


async def test_concurrent_creates_same_name_make_one(
    make_settings: Settings, make_launch: MakeLaunch, engine: Engine
) -> None:
    a, b = DockerProvider(make_settings()), DockerProvider(make_settings())
    try:
        spec = make_launch("race")
        results = await asyncio.gather(a.create(spec), b.create(spec), a.create(spec), return_exceptions=True)
        assert all(not isinstance(r, BaseException) for r in results), results
        assert len(engine.containers(f"{LABEL_RUNNER_NAME}={spec.name}")) == 1
    finally:
        await a.close()
        await b.close()


async def test_many_in_parallel(provider: DockerProvider, make_launch: MakeLaunch) -> None:
    specs = [make_launch(f"par{i}", script="sleep 0.5") for i in range(10)]
    await asyncio.gather(*(provider.create(s) for s in specs))
    for s in specs:
        await wait_for_status(provider, s.name, {InstanceStatus.EXITED}, 30)
    await asyncio.gather(*(provider.delete(s.name) for s in specs))
    assert await provider.list() == []
