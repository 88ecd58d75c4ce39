"""A forge and a provider whose state lives in one JSON file, so it outlives
a scaler process killed with SIGKILL (the SIGKILL scenario).

Every operation takes an exclusive ``flock``, loads the file, changes it and
replaces it atomically; the test process (playing the forge and the runners)
uses the same lock. A lock held by a killed process is released by the
kernel. The provider also checks invariants 3 and 4 at the moment of each
delete and create, and records violations in the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from scaler.config import Config, ForgeConfig, PoolConfig
from scaler.domain.job import Job, JobState
from scaler.errors import RunnerBusyError
from scaler.forges.base import RunnerInfo, RunnerLaunch
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_POOL,
    CredentialFile,
    InstanceInfo,
    InstanceStatus,
    LaunchSpec,
    ProviderSettings,
)
from scaler.secrets import Secret
from scaler.testing import FakeForge, FakeForgeState, MemoryProvider

EMPTY: dict[str, Any] = {
    "next_id": 1000,
    "jobs": {},
    "runners": {},
    "instances": {},
    "created": [],
    "deleted": [],
    "minted": [],
    "violations": [],
}


class FileState:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "world.json"
        self.lock_path = directory / "world.lock"
        if not self.path.exists():
            self._write(dict(EMPTY))

    def _write(self, data: Mapping[str, Any]) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data: dict[str, Any] = json.loads(self.path.read_text())
                yield data
                self._write(data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, Any]:
        with self.locked() as data:
            return data


def _runner_info(rid: str, r: Mapping[str, Any]) -> RunnerInfo:
    return RunnerInfo(int(rid), r["name"], r["online"], r["busy"], tuple(r["labels"]), ephemeral=True)


class FileForge(FakeForge):
    """The fake forge adapter over the shared file (signatures as FakeForge)."""

    def __init__(self, config: ForgeConfig, files: FileState) -> None:
        super().__init__(config, FakeForgeState(secret=config.webhook_secrets()[0].reveal()))
        self.files = files

    async def list_queued_jobs(self) -> list[Job] | None:
        with self.files.locked() as d:
            return [
                Job(self.name, int(jid), j["repo"], tuple(j["labels"]), JobState.QUEUED)
                for jid, j in d["jobs"].items()
                if j["status"] == "queued"
            ]

    async def list_runners(self) -> list[RunnerInfo]:
        with self.files.locked() as d:
            return [_runner_info(rid, r) for rid, r in d["runners"].items()]

    async def get_runner(self, runner_id: int) -> RunnerInfo | None:
        with self.files.locked() as d:
            r = d["runners"].get(str(runner_id))
            return _runner_info(str(runner_id), r) if r else None

    async def mint(self, pool: PoolConfig, runner_name: str, job: Job | None) -> RunnerLaunch:
        token = f"file-runner-token-{uuid.uuid4().hex}"
        with self.files.locked() as d:
            rid = d["next_id"]
            d["next_id"] += 1
            d["runners"][str(rid)] = {
                "name": runner_name,
                "token": token,
                "labels": list(pool.labels),
                "online": False,
                "busy": False,
            }
            d["minted"].append(runner_name)
        return RunnerLaunch(
            rid,
            runner_name,
            "runner:latest",
            ("/runner/run", "--once"),
            {},
            (CredentialFile("/runner/.credential", Secret(token)),),
        )

    async def deregister(self, runner_id: int) -> None:
        with self.files.locked() as d:
            r = d["runners"].get(str(runner_id))
            if r is None:
                return
            if r["busy"]:
                raise RunnerBusyError(f"runner {r['name']} is busy")
            del d["runners"][str(runner_id)]


class FileProvider(MemoryProvider):
    """The memory provider over the shared file."""

    def __init__(self, settings: ProviderSettings, files: FileState, config: Config) -> None:
        super().__init__(settings)
        self.files = files
        self.config = config

    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        with self.files.locked() as d:
            inst = d["instances"].get(launch.name)
            if inst is None:
                inst = {
                    "labels": dict(launch.labels),
                    "status": "running",
                    "exit_code": None,
                    "created_at": time.time(),
                    "files": [[f.path, f.mode] for f in launch.files],
                }
                d["instances"][launch.name] = inst
                d["created"].append(launch.name)
                pool = launch.labels.get(LABEL_POOL)
                count = sum(1 for i in d["instances"].values() if i["labels"].get(LABEL_POOL) == pool)
                cap = next((p.max for p in self.config.pools if p.name == pool), 0)
                if count > cap:
                    d["violations"].append(f"inv4: pool {pool} has {count} > max {cap} at {launch.name}")
            return _info(launch.name, inst)

    async def delete(self, name: str) -> None:
        with self.files.locked() as d:
            if d["instances"].pop(name, None) is None:
                return
            d["deleted"].append(name)
            if any(r["name"] == name and r["busy"] for r in d["runners"].values()):
                d["violations"].append(f"inv3: {name} deleted while its runner was busy")

    async def get(self, name: str) -> InstanceInfo | None:
        with self.files.locked() as d:
            inst = d["instances"].get(name)
            return _info(name, inst) if inst else None

    async def list(self) -> list[InstanceInfo]:
        me = self.settings.controller_id
        with self.files.locked() as d:
            return [_info(n, i) for n, i in d["instances"].items() if i["labels"].get(LABEL_CONTROLLER) == me]


def _info(name: str, inst: Mapping[str, Any]) -> InstanceInfo:
    return InstanceInfo(
        name=name,
        status=InstanceStatus(inst["status"]),
        labels=dict(inst["labels"]),
        created_at=inst["created_at"],
        exit_code=inst["exit_code"],
    )
