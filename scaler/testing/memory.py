"""An in-memory provider with injectable latency and failures."""

from __future__ import annotations

import asyncio
import builtins
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from scaler.errors import ProviderTemporaryError
from scaler.provider import (
    LABEL_CONTROLLER,
    Finding,
    InstanceInfo,
    InstanceStatus,
    LaunchSpec,
    ProviderSettings,
)
from scaler.testing.launch_record import ExitFifo, LaunchLog


class MemorySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    create_latency: float = Field(default=0.0, ge=0)
    delete_latency: float = Field(default=0.0, ge=0)
    # For a runner simulator in another process (scaler.testing.launch_record).
    launch_log: str | None = None
    exit_fifo: str | None = None


@dataclass
class MemoryInstance:
    spec: LaunchSpec
    info: InstanceInfo


@dataclass
class Call:
    op: str
    name: str
    at: float  # time.perf_counter() when the call arrived


class MemoryProvider:
    """Keeps instances in a dict. Knobs: latencies, queued failures
    (``fail_creates``/``fail_deletes`` hold exceptions raised by the next
    calls), ``hang_creates`` (create never returns), and hooks run on create."""

    settings_model: ClassVar[Any] = MemorySettings
    pool_options_model: ClassVar[Any] = None

    def __init__(
        self, settings: ProviderSettings | None = None, *, shared: dict[str, MemoryInstance] | None = None
    ) -> None:
        self.settings = settings or ProviderSettings("memory", "memory", "runner-scaler", {})
        opts = MemorySettings.model_validate(dict(self.settings.options))
        self.name = self.settings.name
        self.create_latency = opts.create_latency
        self.delete_latency = opts.delete_latency
        # ``shared`` lets two provider objects see one backend (a restart).
        self.instances: dict[str, MemoryInstance] = shared if shared is not None else {}
        self.fail_creates: deque[Exception] = deque()
        self.fail_deletes: deque[Exception] = deque()
        self.fail_lists: deque[Exception] = deque()
        self.hang_creates = False
        self.on_create: list[Callable[[LaunchSpec], None]] = []
        self.on_delete: list[Callable[[str], None]] = []
        self.calls: list[Call] = []
        self.deleted: list[str] = []
        self._changes: asyncio.Queue[InstanceInfo] | None = None
        self._log = LaunchLog(opts.launch_log) if opts.launch_log else None
        self._exits = ExitFifo(opts.exit_fifo, self._exited) if opts.exit_fifo else None

    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        self.calls.append(Call("create", launch.name, time.perf_counter()))
        if self.hang_creates:
            await asyncio.Event().wait()
        if self.create_latency:
            await asyncio.sleep(self.create_latency)
        if self.fail_creates:
            raise self.fail_creates.popleft()
        existing = self.instances.get(launch.name)
        if existing is not None:
            return existing.info
        info = InstanceInfo(
            name=launch.name,
            status=InstanceStatus.RUNNING,
            labels=dict(launch.labels),
            created_at=time.time(),
        )
        self.instances[launch.name] = MemoryInstance(launch, info)
        if self._log is not None:
            self._log.created(launch)
        for hook in self.on_create:
            hook(launch)
        return info

    async def delete(self, name: str) -> None:
        self.calls.append(Call("delete", name, time.perf_counter()))
        if self.delete_latency:
            await asyncio.sleep(self.delete_latency)
        if self.fail_deletes:
            raise self.fail_deletes.popleft()
        for hook in self.on_delete:
            hook(name)
        if self.instances.pop(name, None) is not None:
            self.deleted.append(name)
            if self._log is not None:
                self._log.deleted(name)

    async def get(self, name: str) -> InstanceInfo | None:
        inst = self.instances.get(name)
        return inst.info if inst else None

    async def list(self) -> list[InstanceInfo]:
        if self.fail_lists:
            raise self.fail_lists.popleft()
        me = self.settings.controller_id
        return [i.info for i in self.instances.values() if i.info.labels.get(LABEL_CONTROLLER) == me]

    async def watch(self) -> AsyncIterator[InstanceInfo]:
        self._changes = asyncio.Queue()
        if self._exits is not None:
            self._exits.start()
        while True:
            yield await self._changes.get()

    async def check(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        return [Finding("ok", f"provider {self.name}", f"in-memory provider, {len(self.instances)} instances")]

    async def close(self) -> None:
        if self._exits is not None:
            self._exits.close()
        if self._log is not None:
            self._log.close()

    # --- test controls ------------------------------------------------------

    def finish(self, name: str, exit_code: int = 0) -> None:
        """The runner inside exited (its job is over)."""
        self._set(name, InstanceStatus.EXITED, exit_code=exit_code)

    def _exited(self, name: str, code: int) -> None:
        if name in self.instances:
            self.finish(name, code)

    def crash(self, name: str, reason: str = "OOMKilled") -> None:
        self._set(name, InstanceStatus.FAILED, reason=reason, exit_code=137)

    def _set(self, name: str, status: InstanceStatus, **changes: Any) -> None:
        inst = self.instances[name]
        inst.info = InstanceInfo(
            name=name, status=status, labels=inst.info.labels, created_at=inst.info.created_at, **changes
        )
        if self._changes is not None:
            self._changes.put_nowait(inst.info)

    def fail_next_create(self, exc: Exception | None = None) -> None:
        self.fail_creates.append(exc or ProviderTemporaryError("injected create failure"))

    def create_calls(self) -> builtins.list[str]:
        return [c.name for c in self.calls if c.op == "create"]
