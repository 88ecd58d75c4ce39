"""dockerd restarted mid-run: the provider rides it out and reconciles.

Stops and starts the engine through .ci/services/docker.sh (by the PID it
recorded), so it needs the dockerd that script started.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from providers.docker import DockerProvider
from scaler.errors import ProviderTemporaryError
from scaler.provider import LABEL_CONTROLLER, InstanceInfo, InstanceStatus
from tests.contract.provider_contract import wait_for_status
from tests.docker.conftest import HOW_TO_START, Engine, MakeLaunch, Settings

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]


def _service(*functions: str) -> None:
    script = os.environ.get("RUNNER_SCALER_TEST_DOCKER_SCRIPT") or str(REPO / ".ci/services/docker.sh")
    state = os.environ.get("RUNNER_SCALER_TEST_DOCKER_DIR")
    if not state or ("docker_stop" in functions and not Path(state, "dockerd.pid").exists()):
        pytest.fail("the restart test needs the dockerd started by .ci/services/docker.sh; " + HOW_TO_START)
    env = {**os.environ, "RUNNER_SCALER_DOCKER_DIR": state}
    cmd = f'source "{script}" && ' + " && ".join(functions)
    done = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"


def _ensure_up() -> None:
    """Leave the engine up for whatever runs next, even when the test failed midway."""
    if not Path(os.environ["RUNNER_SCALER_TEST_DOCKER_DIR"], "dockerd.pid").exists():
        _service("docker_start")


async def _collect(p: DockerProvider, seen: list[InstanceInfo]) -> None:
    async for info in p.watch():
        seen.append(info)


async def test_dockerd_restarted_mid_burst(
    make_settings: Settings, make_launch: MakeLaunch, engine: Engine, controller_id: str
) -> None:
    p = DockerProvider(make_settings(health_interval=0.3, reconnect_max_delay=0.5, resync_interval=3600))
    seen: list[InstanceInfo] = []
    watcher = asyncio.create_task(_collect(p, seen))
    try:
        long = [make_launch(f"long{i}", run_seconds=300) for i in range(3)]
        for spec in long:
            await p.create(spec)
        short = make_launch("short", script="sleep 0.3")
        await p.create(short)
        await wait_for_status(p, short.name, {InstanceStatus.EXITED}, 30)

        # a burst of creates, with the engine going away under it
        burst = [make_launch(f"burst{i}", run_seconds=300) for i in range(10)]
        creates = asyncio.gather(*(p.create(s) for s in burst), return_exceptions=True)
        await asyncio.sleep(0.05)
        await asyncio.to_thread(_service, "docker_stop")
        results: list[Any] = await creates
        failed = [s for s, r in zip(burst, results, strict=True) if isinstance(r, BaseException)]
        for r in results:
            if isinstance(r, BaseException):
                assert isinstance(r, ProviderTemporaryError), repr(r)

        # while it is down: what was seen stays listed, nothing new is placed
        down_list = {i.name for i in await p.list()}
        assert {s.name for s in long} | {short.name} <= down_list
        with pytest.raises(ProviderTemporaryError):
            await p.create(make_launch("while-down"))
        assert (await p.get(long[0].name)) is not None

        await asyncio.to_thread(_service, "docker_start")

        # retried creates (what the reconciler does) adopt or make each name once
        deadline = time.monotonic() + 30
        pending = list(failed)
        print(f"{len(failed)} of {len(burst)} creates failed while dockerd stopped")
        while pending and time.monotonic() < deadline:
            retry = []
            for spec in pending:
                try:
                    await p.create(spec)
                except ProviderTemporaryError:
                    retry.append(spec)
            pending = retry
            if pending:
                await asyncio.sleep(0.3)
        assert not pending

        # the long runners were stopped with the engine (no live-restore): reported ended
        for spec in long:
            info = await wait_for_status(p, spec.name, {InstanceStatus.EXITED, InstanceStatus.FAILED}, 30)
            assert info.exit_code is not None and info.exit_code != 0, info
        # ...and watch() told us, through the reconnected stream / re-list
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not {s.name for s in long} <= {
            i.name for i in seen if i.status in (InstanceStatus.EXITED, InstanceStatus.FAILED)
        }:
            await asyncio.sleep(0.2)
        assert {s.name for s in long} <= {
            i.name for i in seen if i.status in (InstanceStatus.EXITED, InstanceStatus.FAILED)
        }

        # exactly one container per name, nothing unknown
        rows = engine.containers(f"{LABEL_CONTROLLER}={controller_id}")
        names = Counter(str(r["Names"][0]).lstrip("/") for r in rows)
        expected = {s.name for s in [*long, short, *burst]}
        assert set(names) == expected and max(names.values()) == 1, (names, expected)
        assert {i.name for i in await p.list()} == expected

        # events flow again after the restart
        after = make_launch("after", script="sleep 0.5; exit 7")
        await p.create(after)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(i.name == after.name and i.exit_code == 7 for i in seen):
            await asyncio.sleep(0.1)
        assert any(i.name == after.name and i.exit_code == 7 for i in seen)

        for name in [*expected, after.name]:
            await p.delete(name)
        assert await p.list() == []
        assert engine.containers(f"{LABEL_CONTROLLER}={controller_id}") == []
    finally:
        await asyncio.to_thread(_ensure_up)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await p.close()
