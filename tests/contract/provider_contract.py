"""The provider contract, run against every provider.

Subclass :class:`ProviderContract` in a provider's test module and define the
fixtures it needs:

* ``provider`` — a ready :class:`scaler.provider.Provider` (closed afterwards
  by the fixture);
* ``provider_again`` — a second, independent provider object for the same
  backend and controller id (as after a scaler restart);
* ``make_launch`` — ``(name: str, *, run_seconds: float) -> LaunchSpec``: a
  spec whose runner writes nothing secret to stdout and exits 0 after about
  ``run_seconds``;
* ``exit_timeout`` — seconds within which an exited instance must be seen as
  EXITED (by ``get``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_POOL,
    InstanceInfo,
    InstanceStatus,
    LaunchSpec,
    Provider,
)

MakeLaunch = Callable[..., LaunchSpec]


async def wait_for_status(
    provider: Provider, name: str, wanted: set[InstanceStatus], timeout: float
) -> InstanceInfo:
    deadline = time.monotonic() + timeout
    info: InstanceInfo | None = None
    while time.monotonic() < deadline:
        info = await provider.get(name)
        if info is not None and info.status in wanted:
            return info
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name} never reached {wanted}; last seen {info}")


class ProviderContract:
    async def test_create_then_get_and_list(self, provider: Provider, make_launch: MakeLaunch) -> None:
        """A created instance is found by get and by list, with its stamps."""
        spec = make_launch("contract-a", run_seconds=30)
        info = await provider.create(spec)
        assert info.name == spec.name
        got = await provider.get(spec.name)
        assert got is not None and got.labels[LABEL_POOL] == spec.pool
        names = {i.name for i in await provider.list()}
        assert spec.name in names
        await provider.delete(spec.name)

    async def test_create_is_idempotent(self, provider: Provider, make_launch: MakeLaunch) -> None:
        """Creating an existing name adopts it instead of making a second one."""
        spec = make_launch("contract-b", run_seconds=30)
        await provider.create(spec)
        again = await provider.create(spec)
        assert again.name == spec.name
        assert [i.name for i in await provider.list()].count(spec.name) == 1
        await provider.delete(spec.name)

    async def test_delete_is_idempotent(self, provider: Provider, make_launch: MakeLaunch) -> None:
        """Deleting twice, or deleting what never existed, succeeds."""
        spec = make_launch("contract-c", run_seconds=30)
        await provider.create(spec)
        await provider.delete(spec.name)
        await provider.delete(spec.name)
        await provider.delete("contract-never-existed")
        assert await provider.get(spec.name) is None
        assert spec.name not in {i.name for i in await provider.list()}

    async def test_list_only_this_controller(
        self, provider: Provider, make_launch: MakeLaunch
    ) -> None:
        """list() returns only instances stamped with this controller's id."""
        spec = make_launch("contract-d", run_seconds=30)
        await provider.create(spec)
        for info in await provider.list():
            assert info.labels.get(LABEL_CONTROLLER) == spec.labels[LABEL_CONTROLLER]
        await provider.delete(spec.name)

    async def test_adopted_after_restart(
        self, provider: Provider, provider_again: Provider, make_launch: MakeLaunch
    ) -> None:
        """A second provider object sees and can delete the first one's instances."""
        spec = make_launch("contract-e", run_seconds=30)
        await provider.create(spec)
        seen = {i.name: i for i in await provider_again.list()}
        assert spec.name in seen
        assert dict(seen[spec.name].labels).items() >= {k: v for k, v in spec.labels.items()}.items()
        await provider_again.delete(spec.name)
        assert await provider.get(spec.name) is None

    async def test_exit_is_detected(
        self, provider: Provider, make_launch: MakeLaunch, exit_timeout: float
    ) -> None:
        """An instance whose runner exits is reported EXITED with its exit code."""
        spec = make_launch("contract-f", run_seconds=1)
        await provider.create(spec)
        info = await wait_for_status(provider, spec.name, {InstanceStatus.EXITED}, exit_timeout)
        assert info.exit_code == 0
        await provider.delete(spec.name)


@pytest.fixture
def exit_timeout() -> float:
    return 60.0
