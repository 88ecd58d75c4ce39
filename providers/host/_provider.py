"""The host provider: one sandboxed process tree per runner on this host."""

from __future__ import annotations

import asyncio
import builtins
import shutil
import socket
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import structlog
from pydantic import ValidationError

from providers.host import _check, _state, _teardown, _trust
from providers.host._launch import Launcher, StartFailed, Tools
from providers.host._options import HostPoolOptions, HostSettings, problems
from providers.host._sandbox import SandboxError
from providers.host._state import Layout, Record
from providers.host._systemd_mode import SystemdDriver
from providers.host._uids import UidAllocator, UidsExhausted
from scaler.errors import ConfigError, ProviderPermanentError, ProviderTemporaryError
from scaler.provider import Finding, InstanceInfo, InstanceStatus, LaunchSpec, ProviderSettings

log = structlog.get_logger("providers.host")

INTERRUPTED = "create interrupted (the scaler stopped before the sandbox started)"


def resolve_mode(settings: HostSettings) -> str:
    if settings.mode != "auto":
        return settings.mode
    systemd = Path("/run/systemd/system").is_dir() and shutil.which(settings.systemd_run) is not None
    return "systemd" if systemd else "bubblewrap"


class HostProvider:
    """Runners as sandboxed process trees on the scaler's own host (trusted repositories only)."""

    settings_model: ClassVar[Any] = HostSettings
    pool_options_model: ClassVar[Any] = HostPoolOptions

    @staticmethod
    def validate_pool(pool: Mapping[str, Any], forge: Mapping[str, Any]) -> list[str]:
        """The trusted-repository rule (see ``_trust``), consulted by the plugin loader."""
        return _trust.validate_pool(pool, forge)

    def __init__(self, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.controller_id = settings.controller_id
        try:
            self.settings = HostSettings.model_validate(dict(settings.options))
        except ValidationError as exc:
            raise ConfigError(problems(exc, f"providers[{settings.name}].options")) from None
        self.mode = resolve_mode(self.settings)
        self.layout = Layout(self.settings.state_path, self.settings.work_path)
        self.uids = UidAllocator(self.settings.state_path, self.settings.uid_range)
        self.systemd = SystemdDriver(self.settings, self.layout)
        self._launcher: Launcher | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self._creating: set[str] = set()
        self._reported: set[str] = set()
        self.hostname = socket.gethostname()

    # --- helpers ---------------------------------------------------------------

    def _tools(self) -> Tools:
        bwrap, setpriv = shutil.which(self.settings.bwrap), shutil.which(self.settings.setpriv)
        if bwrap is None or setpriv is None:
            missing = self.settings.bwrap if bwrap is None else self.settings.setpriv
            raise ProviderPermanentError(f"provider {self.name}: {missing} not found (install bubblewrap, util-linux)")
        return Tools(bwrap, setpriv)

    def launcher(self) -> Launcher:
        if self._launcher is None:
            self._launcher = Launcher(self.settings, self.layout, self.uids, self._tools())
        return self._launcher

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _load(self, name: str) -> Record | None:
        """Our record of ``name``: None when absent, foreign, or not to be trusted."""
        try:
            record = _state.load_record(self.layout, name)
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError) and name not in self._reported:
                self._reported.add(name)
                log.warning("ignoring an instance record", instance=name, reason=str(exc))
            return None
        return record if self._ours(record) else None

    def _bwrap_status(self, record: Record) -> tuple[InstanceStatus, int | None, str | None]:
        result = _state.load_result(self.layout, record.name)
        if result is not None:
            failed = result.reason is not None or result.exit_code is None
            status = InstanceStatus.FAILED if failed else InstanceStatus.EXITED
            return status, result.exit_code, result.reason
        if _teardown.supervisor_alive(self.layout, record.name):
            return InstanceStatus.RUNNING, None, None
        if _state.load_runtime(self.layout, record.name) is not None:
            return InstanceStatus.FAILED, None, "its supervisor is gone (killed, or the host rebooted)"
        if record.name in self._creating or time.time() - record.created_at < self.settings.start_timeout + 10:
            return InstanceStatus.STARTING, None, None
        return InstanceStatus.FAILED, None, INTERRUPTED

    async def _info(self, record: Record) -> InstanceInfo:
        if record.mode == "systemd":
            status, code, reason = await self.systemd.status(record)
        else:
            status, code, reason = await asyncio.to_thread(self._bwrap_status, record)
        return InstanceInfo(
            name=record.name, status=status, labels=dict(record.labels), created_at=record.created_at,
            exit_code=code, reason=reason, host=self.hostname,
        )

    async def _teardown(self, name: str, record: Record | None) -> None:
        try:
            if record is not None and record.mode == "systemd":
                await self.systemd.teardown(name, record)
                return
            bwrap = shutil.which(self.settings.bwrap) or self.settings.bwrap
            await asyncio.to_thread(
                _teardown.teardown, self.layout, self.uids, name, record, bwrap=bwrap,
                timeout=self.settings.kill_timeout, controller=self.controller_id,
            )
        except (_teardown.Leftover, StartFailed, OSError) as exc:
            raise ProviderTemporaryError(f"provider {self.name}: teardown of {name}: {exc}") from None

    # --- the protocol -------------------------------------------------------------

    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        if not _state.NAME.match(launch.name):
            raise ProviderPermanentError(f"instance name {launch.name!r}: letters, digits, '_', '.', '-' (max 63)")
        try:
            opts = HostPoolOptions.model_validate(dict(launch.options))
        except ValidationError as exc:
            raise ProviderPermanentError("; ".join(problems(exc, "provider_options"))) from None
        async with self._lock(launch.name):
            existing, mine = await asyncio.to_thread(self._claim, launch.name)
            if not mine:
                raise ProviderPermanentError(f"provider {self.name}: {launch.name} is another controller's instance")
            if existing is not None:
                info = await self._info(existing)
                if info.reason != INTERRUPTED:
                    return info  # adopted
            if existing is not None or await asyncio.to_thread(self.layout.dir(launch.name).exists):
                await self._teardown(launch.name, existing)  # an interrupted create, or a record not to trust
            return await self._start(launch, opts)

    def _claim(self, name: str) -> tuple[Record | None, bool]:
        """(our record of ``name`` or None, whether ``name`` may be ours): a valid
        record of another controller or provider is never torn down or adopted."""
        try:
            record = _state.load_record(self.layout, name)
        except (OSError, ValueError):
            return None, True
        return (record, True) if self._ours(record) else (None, False)

    def _ours(self, record: Record) -> bool:
        return record.controller == self.controller_id and record.provider == self.name

    async def _start(self, launch: LaunchSpec, opts: HostPoolOptions) -> InstanceInfo:
        driver = self.systemd if self.mode == "systemd" else self.launcher()
        record = driver.record(launch, opts, self.controller_id, self.name)
        self._creating.add(launch.name)
        try:
            record = await driver.start(launch, opts, record)
        except (SandboxError, StartFailed, UidsExhausted, OSError) as exc:
            await self._teardown(launch.name, await asyncio.to_thread(self._load, launch.name))
            permanent = isinstance(exc, SandboxError) or (isinstance(exc, StartFailed) and exc.permanent)
            error = ProviderPermanentError if permanent else ProviderTemporaryError
            raise error(f"provider {self.name}: {launch.name}: {exc}") from None
        finally:
            self._creating.discard(launch.name)
        log.info("sandbox started", instance=launch.name, mode=record.mode, uid=record.uid)
        return await self._info(record)

    async def delete(self, name: str) -> None:
        if not _state.NAME.match(name):
            return  # nothing of ours can have that name
        async with self._lock(name):
            try:
                record = _state.load_record(self.layout, name)
            except (OSError, ValueError):
                record = None  # torn down from leases and our own directories only
            if record is not None and not self._ours(record):
                return  # another controller's: not ours to touch
            await self._teardown(name, record)
        self._locks.pop(name, None)

    async def get(self, name: str) -> InstanceInfo | None:
        if not _state.NAME.match(name):
            return None
        record = await asyncio.to_thread(self._load, name)
        return None if record is None else await self._info(record)

    async def list(self) -> builtins.list[InstanceInfo]:
        names = await asyncio.to_thread(self.layout.names)
        records = [r for r in await asyncio.to_thread(lambda: [self._load(n) for n in names]) if r is not None]
        return [await self._info(r) for r in records]

    async def watch(self) -> AsyncIterator[InstanceInfo]:
        last: dict[str, tuple[InstanceStatus, int | None]] = {}
        while True:
            try:
                infos = await self.list()
            except (OSError, ProviderTemporaryError) as exc:
                log.warning("listing sandboxes failed", error=str(exc))
                infos = []
            for info in infos:
                if last.get(info.name) != (info.status, info.exit_code):
                    yield info
            last = {i.name: (i.status, i.exit_code) for i in infos}
            await asyncio.sleep(self.settings.list_interval)

    async def check(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        return await asyncio.to_thread(_check.findings, self, pools)

    async def close(self) -> None:
        return None  # sandboxes outlive the scaler; list() finds them again

