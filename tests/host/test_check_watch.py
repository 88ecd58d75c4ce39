"""``check`` (probes, creating nothing) and ``watch`` (exits as they happen) on real bubblewrap."""

from __future__ import annotations

import asyncio

import pytest

from providers.host import HostProvider
from scaler.provider import InstanceInfo, InstanceStatus
from tests.host.conftest import HostEnv, MakeLaunch, pool_options

pytestmark = pytest.mark.host


async def test_check_probes_without_creating_anything(provider: HostProvider, host_env: HostEnv) -> None:
    """A working set-up is all ok; a missing package is an error naming it; nothing is written."""
    good = await provider.check({"metal": pool_options()})
    assert [f.level for f in good] == ["ok"] * len(good), good
    assert any("bwrap makes sandboxes" in f.message for f in good)
    bad = await provider.check({"metal": pool_options(packages=["no-such-tool-here"])})
    errors = [f for f in bad if f.level == "error"]
    assert len(errors) == 1 and "no-such-tool-here" in errors[0].message and errors[0].subject.endswith("metal")
    assert not any(p.exists() for p in (host_env.state, host_env.work))


async def test_check_says_when_bwrap_is_missing(host_env: HostEnv) -> None:
    """A bwrap that is not there is an error, not a crash."""
    provider = HostProvider(host_env.settings(bwrap="/nonexistent/bwrap"))
    errors = [f for f in await provider.check({}) if f.level == "error"]
    assert [e.message for e in errors] == ["/nonexistent/bwrap not found (Debian: bubblewrap, util-linux)"]


async def test_watch_reports_an_exit_as_it_happens(provider: HostProvider, make_launch: MakeLaunch) -> None:
    """watch() yields the instance when it starts and again when its runner exits."""
    spec = make_launch("watched", script="sleep 1; exit 3")
    seen: list[InstanceInfo] = []

    async def follow() -> None:
        async for info in provider.watch():
            if info.name == spec.name:
                seen.append(info)
                if info.status is InstanceStatus.EXITED:
                    return

    task = asyncio.create_task(follow())
    await provider.create(spec)
    await asyncio.wait_for(task, 20)
    assert seen[-1].status is InstanceStatus.EXITED and seen[-1].exit_code == 3
    await provider.delete(spec.name)
