"""Against real libvirtd + QEMU (TCG), started by .ci/services/libvirt.sh."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import libvirt
import pytest

from providers.libvirt import LibvirtProvider
from providers.libvirt.domainxml import NS_URI, parse_metadata
from scaler.provider import LABEL_CONTROLLER, LABEL_RUNNER_ID, InstanceInfo, InstanceStatus
from tests.contract.provider_contract import wait_for_status
from tests.libvirt.conftest import CONTROLLER, CRED_PATH, LibvirtEnv, launch_for

pytestmark = pytest.mark.libvirt
T = TypeVar("T")


CALL_DEADLINE = 60.0


def _bounded(fn: Callable[[libvirt.virConnect], T], env: LibvirtEnv) -> T:
    """Run ``fn`` on a fresh connection in a daemon thread, failing the test
    if libvirtd does not answer within ``CALL_DEADLINE``: a blocking libvirt
    call on the test's event loop would otherwise hang the whole run."""
    result: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            conn = libvirt.open(env.uri)
            try:
                result.put((True, fn(conn)))
            finally:
                conn.close()
        except BaseException as exc:  # handed to the test thread
            result.put((False, exc))

    threading.Thread(target=run, name="libvirt-test-call", daemon=True).start()
    try:
        ok, value = result.get(timeout=CALL_DEADLINE)
    except queue.Empty:
        raise AssertionError(f"libvirtd at {env.uri} did not answer within {CALL_DEADLINE}s") from None
    if not ok:
        raise value
    return cast(T, value)


def _volumes(env: LibvirtEnv, name: str) -> set[str]:
    def read(conn: libvirt.virConnect) -> set[str]:
        pool = conn.storagePoolLookupByName(env.pool)
        pool.refresh(0)
        return {v.name() for v in pool.listAllVolumes(0) if v.name().startswith(name + ".")}

    return _bounded(read, env)


def _domain_exists(env: LibvirtEnv, name: str) -> bool:
    def look(conn: libvirt.virConnect) -> bool:
        try:
            conn.lookupByName(name)
        except libvirt.libvirtError:
            return False
        return True

    return _bounded(look, env)


def _domain_xml(env: LibvirtEnv, name: str) -> str:
    return _bounded(lambda conn: str(conn.lookupByName(name).XMLDesc(0)), env)


def _serial(env: LibvirtEnv, name: str) -> str:
    path = env.logs / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def test_guest_receives_exactly_its_own_credential(provider: LibvirtProvider, libvirt_env: LibvirtEnv) -> None:
    a = launch_for(libvirt_env, "cred-a", run_seconds=1, secret="secret-for-a-" + os.urandom(8).hex())
    b = launch_for(libvirt_env, "cred-b", run_seconds=1, secret="secret-for-b-" + os.urandom(8).hex())
    seen: list[InstanceInfo] = []

    async def watch() -> None:
        async for info in provider.watch():
            seen.append(info)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(provider.create(a), provider.create(b))
        for spec in (a, b):
            xml = _domain_xml(libvirt_env, spec.name)
            assert spec.files[0].content.reveal() not in xml  # nothing secret in the domain XML
            stamp = parse_metadata(xml)
            assert stamp is not None and stamp.labels[LABEL_RUNNER_ID] == "4242"
        for spec in (a, b):
            info = await wait_for_status(provider, spec.name, {InstanceStatus.EXITED}, 90)
            assert info.exit_code == 0
        for _ in range(50):
            if {i.name for i in seen} >= {a.name, b.name}:
                break
            await asyncio.sleep(0.1)
        assert {i.name for i in seen if i.status is InstanceStatus.EXITED} >= {a.name, b.name}
        log_a, log_b = _serial(libvirt_env, a.name), _serial(libvirt_env, b.name)
        sha_a, sha_b = _sha(a.files[0].content.reveal()), _sha(b.files[0].content.reveal())
        assert f"RS-CRED {CRED_PATH} {sha_a} 600" in log_a, log_a
        assert f"RS-CRED {CRED_PATH} {sha_b} 600" in log_b, log_b
        assert sha_b not in log_a and sha_a not in log_b
        assert f"runner {a.name} starting" in log_a and "RS-EXIT 0" in log_a
        # the credential itself never reaches the console
        assert a.files[0].content.reveal() not in log_a
        # an exited instance keeps its evidence until deleted
        assert _volumes(libvirt_env, a.name) == {a.name + ".overlay.qcow2", a.name + ".seed.iso"}
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await provider.delete(a.name)
        await provider.delete(b.name)
    assert _volumes(libvirt_env, a.name) == set() and _volumes(libvirt_env, b.name) == set()
    assert await provider.get(a.name) is None


async def test_delete_running_removes_domain_and_volumes(provider: LibvirtProvider, libvirt_env: LibvirtEnv) -> None:
    spec = launch_for(libvirt_env, "del", run_seconds=120)
    info = await provider.create(spec)
    assert info.status in (InstanceStatus.RUNNING, InstanceStatus.STARTING)
    assert _domain_exists(libvirt_env, spec.name)
    assert _volumes(libvirt_env, spec.name) == {spec.name + ".overlay.qcow2", spec.name + ".seed.iso"}
    await provider.delete(spec.name)
    assert not _domain_exists(libvirt_env, spec.name)
    assert _volumes(libvirt_env, spec.name) == set()
    await provider.delete(spec.name)


async def test_concurrent_create_of_one_name_makes_one_domain(provider: LibvirtProvider,
                                                              libvirt_env: LibvirtEnv) -> None:
    from scaler.errors import ProviderTemporaryError

    spec = launch_for(libvirt_env, "dup", run_seconds=120)
    try:
        results = await asyncio.gather(*(provider.create(spec) for _ in range(3)), return_exceptions=True)
        assert any(isinstance(r, InstanceInfo) for r in results), results
        assert all(isinstance(r, InstanceInfo | ProviderTemporaryError) for r in results), results
        assert [i.name for i in await provider.list()].count(spec.name) == 1
        assert (await provider.create(spec)).name == spec.name  # and later: adopt
    finally:
        await provider.delete(spec.name)
    assert _volumes(libvirt_env, spec.name) == set()


async def test_new_provider_adopts_from_metadata(libvirt_env: LibvirtEnv) -> None:
    spec = launch_for(libvirt_env, "adopt", run_seconds=120)
    first = LibvirtProvider(libvirt_env.settings())
    created = await first.create(spec)
    await first.close()  # the scaler "dies"
    second = LibvirtProvider(libvirt_env.settings())
    try:
        listed = {i.name: i for i in await second.list()}
        assert spec.name in listed
        assert listed[spec.name].labels[LABEL_RUNNER_ID] == "4242"
        assert listed[spec.name].created_at == created.created_at
        again = await second.create(spec)  # adopt, not a second domain
        assert again.created_at == created.created_at
        other = LibvirtProvider(libvirt_env.settings(controller="someone-else"))
        try:
            assert spec.name not in {i.name for i in await other.list()}
            await other.delete(spec.name)  # not theirs: left alone
            assert _domain_exists(libvirt_env, spec.name)
        finally:
            await other.close()
        await second.delete(spec.name)
        assert not _domain_exists(libvirt_env, spec.name) and _volumes(libvirt_env, spec.name) == set()
    finally:
        await second.delete(spec.name)
        await second.close()


def _service(env: LibvirtEnv, *functions: str) -> None:
    script = "; ".join([f"source {env.script}", *(f"{f} || exit 1" for f in functions)])
    subprocess.run(["bash", "-c", script], check=True, env=os.environ.copy(), timeout=120)


async def test_libvirtd_restart_reconciled(libvirt_env: LibvirtEnv) -> None:
    provider = LibvirtProvider(libvirt_env.settings())
    long = launch_for(libvirt_env, "rst-long", run_seconds=300)
    short = launch_for(libvirt_env, "rst-short", run_seconds=1)
    try:
        await asyncio.gather(provider.create(long), provider.create(short))
        _service(libvirt_env, "libvirt_stop_libvirtd")
        try:
            # libvirtd is gone; the guests are not. list() keeps reporting what it knew.
            during = {i.name: i for i in await provider.list()}
            assert {long.name, short.name} <= set(during)
            assert during[long.name].reason == "host unreachable"
            # the short one finishes while nobody watches
            deadline = time.monotonic() + 90
            while "Power down" not in _serial(libvirt_env, short.name) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert "RS-EXIT 0" in _serial(libvirt_env, short.name)
        finally:
            _service(libvirt_env, "libvirt_start_daemons")
        after = await wait_for_status(provider, short.name, {InstanceStatus.EXITED}, 30)
        assert after.status is InstanceStatus.EXITED
        running = await wait_for_status(provider, long.name, {InstanceStatus.RUNNING}, 30)
        assert running.status is InstanceStatus.RUNNING
        fresh = LibvirtProvider(libvirt_env.settings())
        try:
            seen = {i.name: i.status for i in await fresh.list()}
            assert seen.get(long.name) is InstanceStatus.RUNNING
            assert seen.get(short.name) is InstanceStatus.EXITED
        finally:
            await fresh.close()
        # events still flow on the re-opened connection: delete is clean, nothing leaks
        await provider.delete(long.name)
        await provider.delete(short.name)
        for spec in (long, short):
            assert not _domain_exists(libvirt_env, spec.name)
            assert _volumes(libvirt_env, spec.name) == set()
        assert not [i for i in await provider.list() if i.name in (long.name, short.name)]
        # life-cycle events flow again on the re-opened connection: a clean exit is code 0
        later = launch_for(libvirt_env, "rst-later", run_seconds=1)
        await provider.create(later)
        done = await wait_for_status(provider, later.name, {InstanceStatus.EXITED}, 90)
        assert done.exit_code == 0, done
        await provider.delete(later.name)
    finally:
        with contextlib.suppress(Exception):
            await provider.delete(long.name)
            await provider.delete(short.name)
        await provider.close()


async def test_none_leaked(libvirt_env: LibvirtEnv) -> None:
    """Runs last in this module: no domain or volume of this controller is left."""
    from tests.libvirt.conftest import SESSION

    def ours(conn: libvirt.virConnect) -> list[str]:
        names = []
        for dom in conn.listAllDomains(0):
            with contextlib.suppress(libvirt.libvirtError):
                stamp = parse_metadata(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS_URI, 0))
                if stamp is not None and stamp.labels.get(LABEL_CONTROLLER) == CONTROLLER:
                    names.append(dom.name())
        return names

    def vols(conn: libvirt.virConnect) -> list[str]:
        pool = conn.storagePoolLookupByName(libvirt_env.pool)
        pool.refresh(0)
        return [v.name() for v in pool.listAllVolumes(0) if SESSION in v.name()]

    assert _bounded(ours, libvirt_env) == [] and _bounded(vols, libvirt_env) == []


async def test_check_against_real_host(provider: LibvirtProvider, libvirt_env: LibvirtEnv) -> None:
    findings = await provider.check({"lv": libvirt_env.pool_options()})
    assert all(f.level == "ok" for f in findings), [str(f) for f in findings]
    assert any("base image" in f.message for f in findings)
