"""The Docker provider: one container per runner, on one of several engines."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import io
import json
import os
import posixpath
import random
import re
import tarfile
import time
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import structlog
from pydantic import ValidationError

from providers.docker._client import Conflict, EngineClient, EngineRefused, HostUnavailable, registry_auth_header
from providers.docker._options import DockerPoolOptions, DockerSettings, HostConfig
from providers.docker._placement import HostLoad, choose_host
from scaler.errors import ConfigError, ProviderError, ProviderPermanentError, ProviderTemporaryError
from scaler.loops import wait_or_timeout
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_CREATED_AT,
    LABEL_POOL,
    CredentialFile,
    Finding,
    InstanceInfo,
    InstanceStatus,
    LaunchSpec,
    ProviderSettings,
)

log = structlog.get_logger("providers.docker")

# Which provider entry made the container: two Docker providers of one
# controller may share an engine without seeing each other's containers.
LABEL_PROVIDER = "runner-scaler.io/provider"
# Which host entry placed it: two entries may name the same engine (e.g. one
# engine listed under two names), and each lists only its own containers.
LABEL_HOST = "runner-scaler.io/docker-host"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TERMINAL = (InstanceStatus.EXITED, InstanceStatus.FAILED)
_MIN_API = (1, 41)
# A start refused by the OCI runtime is a configuration problem (command not
# found, capabilities, mount sources) unless the kernel was short of something.
# Only runc's own refusal counts: the engine's plumbing says "no such file or
# directory" too while it shuts down (its network store), and that passes.
_PERMANENT_START = ("oci runtime create failed", "unable to start container process")
_TRANSIENT_START = (
    "resource temporarily unavailable",
    "cannot allocate memory",
    "too many",
    "timeout",
    # the engine's own plumbing (containerd restarting, dockerd shutting down)
    "dial unix",
    "connection refused",
    "context canceled",
    "shutting down",
    "containerd.sock",
    "is not running",
    "ttrpc: closed",
)


def start_failure_is_permanent(message: str) -> bool:
    """Whether a refused container start would fail the same way again."""
    text = message.lower()
    return not any(s in text for s in _TRANSIENT_START) and any(s in text for s in _PERMANENT_START)


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        out.append(f"{prefix}{'.' + loc if loc else ''}: {err['msg']}")
    return out


def _parse_time(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if not m:
        return None
    frac = (m.group(2) or "")[:7]
    tz = m.group(3) or "Z"
    tz = "+00:00" if tz == "Z" else tz
    try:
        return datetime.fromisoformat(m.group(1) + frac + tz).timestamp()
    except ValueError:
        return None


def _created_at(labels: Mapping[str, str], fallback: Any) -> float | None:
    try:
        return float(labels[LABEL_CREATED_AT])
    except (KeyError, ValueError):
        return _parse_time(fallback)


def info_from_inspect(data: Mapping[str, Any], host: str) -> InstanceInfo:
    state: Mapping[str, Any] = data.get("State") or {}
    labels: dict[str, str] = dict((data.get("Config") or {}).get("Labels") or {})
    name = str(data.get("Name", "")).lstrip("/")
    st = str(state.get("Status", ""))
    error = str(state.get("Error") or "") or None
    exit_code: int | None = None
    reason: str | None = None
    if st in ("running", "restarting", "paused"):
        status = InstanceStatus.RUNNING
    elif st == "created":
        status = InstanceStatus.FAILED if error else InstanceStatus.STARTING
        reason = error
    elif st in ("exited", "removing", "dead"):
        exit_code = int(state.get("ExitCode", 0))
        if state.get("OOMKilled"):
            status, reason = InstanceStatus.FAILED, "OOMKilled"
        elif st == "dead":
            status, reason = InstanceStatus.FAILED, error or "dead"
        elif error:
            status, reason = InstanceStatus.FAILED, error
        else:
            status = InstanceStatus.EXITED
    else:
        status = InstanceStatus.STARTING
    return InstanceInfo(
        name=name,
        status=status,
        labels=labels,
        created_at=_created_at(labels, data.get("Created")),
        exit_code=exit_code,
        reason=reason,
        host=host,
    )


def credential_tar(files: list[CredentialFile], base: str, owner: tuple[int, int], mkdirs: list[str]) -> bytes:
    """An in-memory tar rooted at ``base``: ``mkdirs`` (0700) then the files."""
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in mkdirs:
            ti = tarfile.TarInfo(posixpath.relpath(d, base))
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o700, now
            ti.uid, ti.gid = owner
            tar.addfile(ti)
        for f in files:
            data = f.content.reveal().encode()
            ti = tarfile.TarInfo(posixpath.relpath(f.path, base))
            ti.size, ti.mode, ti.mtime = len(data), f.mode & 0o7777, now
            ti.uid, ti.gid = owner
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


class _Host:
    def __init__(self, cfg: HostConfig, settings: DockerSettings) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.cap = settings.cap(cfg)
        self.client = EngineClient(cfg, settings)
        self.healthy = True  # until it fails to answer
        self.last_error: str | None = None
        self.reserved = 0
        self.last_event: float | None = None
        self.wake = asyncio.Event()


class DockerProvider:
    """Ephemeral runners as Docker containers on one or more engines."""

    settings_model: ClassVar[Any] = DockerSettings
    pool_options_model: ClassVar[Any] = DockerPoolOptions

    def __init__(self, settings: ProviderSettings) -> None:
        self.name = settings.name
        self.controller_id = settings.controller_id
        try:
            self.settings = DockerSettings.model_validate(dict(settings.options))
        except ValidationError as exc:
            raise ConfigError(_problems(exc, f"providers[{settings.name}].options")) from None
        try:
            self._hosts = {h.name: _Host(h, self.settings) for h in self.settings.hosts}
        except (OSError, ValueError) as exc:  # TLS files unreadable / invalid
            raise ConfigError([f"providers[{settings.name}].options.hosts: {exc}"]) from None
        self._order = [h.name for h in self.settings.hosts]
        self._known: dict[str, InstanceInfo] = {}  # name → last seen (host in .host)
        self._terminal: dict[str, InstanceInfo] = {}  # container id → info once exited (never changes)
        self._subscribers: set[asyncio.Queue[InstanceInfo | None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._synced = False
        self._closed = False
        self.dropped_watch_events = 0
        self._dir_cache: dict[tuple[str, str], dict[str, bool]] = {}
        # Names this object is creating now: a container of ours found in the
        # "created" state under any other name was abandoned between create
        # and start (its creator died) and will never start by itself.
        self._creating: set[str] = set()

    # -- life cycle ---------------------------------------------------------------
    def _labels_filter(self, host: _Host | None = None) -> list[str]:
        out = [f"{LABEL_CONTROLLER}={self.controller_id}", f"{LABEL_PROVIDER}={self.name}"]
        if host is not None:
            out.append(f"{LABEL_HOST}={host.name}")
        return out

    def _ensure_started(self) -> None:
        if self._closed:
            raise ProviderPermanentError(f"docker provider {self.name} is closed")
        if self._started:
            return
        self._started = True
        for host in self._hosts.values():
            self._tasks.append(asyncio.create_task(self._resync_loop(host), name=f"docker-{host.name}-resync"))
            if self.settings.events:
                self._tasks.append(asyncio.create_task(self._events_loop(host), name=f"docker-{host.name}-events"))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        for q in list(self._subscribers):
            self._offer(q, None)
        for host in self._hosts.values():
            await host.client.close()

    # -- health -------------------------------------------------------------------
    def _mark_down(self, host: _Host, exc: BaseException) -> None:
        if host.healthy:
            log.warning("docker host unhealthy", provider=self.name, host=host.name, error=str(exc))
        host.healthy = False
        host.last_error = str(exc)
        host.wake.set()

    def _mark_up(self, host: _Host) -> bool:
        was_down = not host.healthy
        if was_down:
            log.info("docker host healthy again", provider=self.name, host=host.name)
        host.healthy = True
        host.last_error = None
        return was_down

    async def _resync_loop(self, host: _Host) -> None:
        while True:
            interval = self.settings.resync_interval if host.healthy else self.settings.health_interval
            await wait_or_timeout(host.wake, interval)
            if not host.healthy:
                await asyncio.sleep(min(self.settings.health_interval, 1.0))
            try:
                await host.client.ping()
                self._mark_up(host)
                await self._list_host(host)
            except HostUnavailable as exc:
                self._mark_down(host, exc)
            except ProviderError as exc:
                log.warning("docker resync failed", provider=self.name, host=host.name, error=str(exc))

    async def _events_loop(self, host: _Host) -> None:
        delay = 0.5
        filters = {
            "type": ["container"],
            "label": self._labels_filter(host),
            "event": ["die", "oom", "destroy"],
        }
        while True:
            try:
                await host.client.ping()
                self._mark_up(host)
                # catch up on whatever the stream missed while it was down
                await self._list_host(host)
                async for ev in host.client.events(filters, host.last_event):
                    delay = 0.5
                    await self._on_event(host, ev)
                log.info("docker events stream ended; reconnecting", provider=self.name, host=host.name)
            except HostUnavailable as exc:
                self._mark_down(host, exc)
            except ProviderError as exc:
                log.warning("docker events failed", provider=self.name, host=host.name, error=str(exc))
            await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter
            delay = min(delay * 2, self.settings.reconnect_max_delay)

    async def _on_event(self, host: _Host, ev: Mapping[str, Any]) -> None:
        tn = ev.get("timeNano")
        if isinstance(tn, int):
            host.last_event = tn / 1e9
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        name = str(attrs.get("name", ""))
        action = str(ev.get("Action") or ev.get("status") or "")
        if not name:
            return
        if action == "destroy":
            known = self._known.get(name)
            if known is not None and known.host == host.name:
                del self._known[name]
            self._terminal.pop(str(actor.get("ID", "")), None)
            return
        data = await host.client.inspect(str(actor.get("ID") or name))
        if data is not None:
            self._observe(self._remember(host, data))

    # -- watch ----------------------------------------------------------------------
    def _offer(self, q: asyncio.Queue[InstanceInfo | None], item: InstanceInfo | None) -> None:
        while True:
            try:
                q.put_nowait(item)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()  # the oldest goes; list() remains the truth
                    self.dropped_watch_events += 1

    def _observe(self, info: InstanceInfo) -> None:
        old = self._known.get(info.name)
        self._known[info.name] = info
        if old is None or (old.status, old.exit_code, old.reason) != (info.status, info.exit_code, info.reason):
            for q in self._subscribers:
                self._offer(q, info)

    async def watch(self) -> AsyncIterator[InstanceInfo]:
        self._ensure_started()
        q: asyncio.Queue[InstanceInfo | None] = asyncio.Queue(maxsize=self.settings.watch_queue_size)
        self._subscribers.add(q)
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item
        finally:
            self._subscribers.discard(q)

    # -- reading --------------------------------------------------------------------
    def _placed_on(self, host: _Host, data: Mapping[str, Any]) -> bool:
        labels = (data.get("Config") or {}).get("Labels") or {}
        placed = labels.get(LABEL_HOST)
        return placed is None or placed == host.name or placed not in self._hosts

    def _ours(self, labels: Mapping[str, str]) -> bool:
        return labels.get(LABEL_CONTROLLER) == self.controller_id and labels.get(LABEL_PROVIDER) == self.name

    def _remember(self, host: _Host, data: Mapping[str, Any]) -> InstanceInfo:
        info = info_from_inspect(data, host.name)
        if (data.get("State") or {}).get("Status") == "created" and info.name not in self._creating:
            # Failed, not starting: nothing will start it, and the core would
            # otherwise count it as supply until its pool's boot_timeout.
            info = dataclasses.replace(
                info, status=InstanceStatus.FAILED, reason=info.reason or "created but never started (creator gone)"
            )
        if info.status in _TERMINAL and info.exit_code is not None:  # exited: final
            self._terminal[str(data.get("Id", ""))] = info
        return info

    async def _list_host(self, host: _Host) -> list[InstanceInfo]:
        rows = await host.client.list_containers(self._labels_filter(host))
        out: list[InstanceInfo] = []
        for row in rows:
            cid = str(row.get("Id", ""))
            labels = dict(row.get("Labels") or {})
            names = row.get("Names") or []
            name = str(names[0]).lstrip("/") if names else cid[:12]
            state = str(row.get("State", ""))
            if state == "running":
                info = InstanceInfo(
                    name, InstanceStatus.RUNNING, labels, _created_at(labels, row.get("Created")), host=host.name
                )
            elif cid in self._terminal:
                info = self._terminal[cid]
            else:  # exited / created / dead: the summary lacks exit code, OOM, error
                data = await host.client.inspect(cid)
                if data is None:
                    continue
                info = self._remember(host, data)
            out.append(info)
        seen = {i.name for i in out}
        for name, old in list(self._known.items()):
            if old.host == host.name and name not in seen:
                del self._known[name]
        live_ids = {str(r.get("Id", "")) for r in rows}
        for cid in [c for c, i in self._terminal.items() if i.host == host.name and c not in live_ids]:
            del self._terminal[cid]
        for info in out:
            self._observe(info)
        return out

    async def list(self) -> list[InstanceInfo]:
        self._ensure_started()

        async def one(host: _Host) -> list[InstanceInfo]:
            try:
                infos = await self._list_host(host)
            except HostUnavailable as exc:
                self._mark_down(host, exc)
                # stale but present: a host that is down must not look empty
                return [i for i in self._known.values() if i.host == host.name]
            if self._mark_up(host):
                host.wake.set()
            return infos

        results = await asyncio.gather(*(one(h) for h in self._hosts.values()))
        self._synced = True
        return [i for infos in results for i in infos]

    async def _find(self, name: str) -> tuple[_Host, dict[str, Any]] | None:
        """Where ``name`` lives (any owner); raises when it was last seen on a host that is down."""
        known = self._known.get(name)
        if known is not None and known.host in self._hosts:
            host = self._hosts[known.host]
            if not host.healthy:
                raise HostUnavailable(f"{name} is on docker host {host.name}, which is not answering")
            try:
                data = await host.client.inspect(name)
            except HostUnavailable as exc:
                self._mark_down(host, exc)
                raise
            if data is not None and self._placed_on(host, data):
                return host, data
            self._known.pop(name, None)

        async def probe(host: _Host) -> tuple[_Host, dict[str, Any] | None]:
            try:
                data = await host.client.inspect(name)
            except HostUnavailable as exc:
                self._mark_down(host, exc)
                return host, None
            if data is not None and not self._placed_on(host, data):
                data = None  # the same engine under another host entry
            return host, data

        # Hosts already known to be down are skipped (the resync loop revives
        # them and re-lists what they hold); a name seen there was handled above.
        results = await asyncio.gather(*(probe(h) for h in self._hosts.values() if h.healthy))
        for host, data in results:
            if data is not None:
                return host, data
        return None

    async def get(self, name: str) -> InstanceInfo | None:
        self._ensure_started()
        try:
            found = await self._find(name)
        except ProviderTemporaryError:
            known = self._known.get(name)
            if known is not None:
                return known  # on a host that is down: last seen
            return None
        if found is None:
            self._known.pop(name, None)
            return None
        host, data = found
        info = self._remember(host, data)
        if not self._ours(info.labels):
            return None
        self._observe(info)
        return info

    # -- create -------------------------------------------------------------------------
    def pool_options(self, options: Mapping[str, Any] | DockerPoolOptions) -> DockerPoolOptions:
        if isinstance(options, DockerPoolOptions):
            return options
        try:
            return DockerPoolOptions.model_validate(dict(options))
        except ValidationError as exc:
            raise ProviderPermanentError("; ".join(_problems(exc, "provider_options"))) from None

    def _stamps(self, launch: LaunchSpec, opts: DockerPoolOptions) -> dict[str, str]:
        labels = {**opts.extra_labels, **launch.labels}
        labels[LABEL_CONTROLLER] = self.controller_id
        labels[LABEL_PROVIDER] = self.name
        labels[LABEL_POOL] = launch.pool
        labels.setdefault(LABEL_CREATED_AT, f"{time.time():.3f}")
        return labels

    def _body(self, launch: LaunchSpec, opts: DockerPoolOptions, labels: Mapping[str, str]) -> dict[str, Any]:
        res = opts.resources
        hc: dict[str, Any] = {
            "RestartPolicy": {"Name": "no"},
            "AutoRemove": False,
            "Privileged": opts.privileged,
        }
        if opts.network_mode:
            hc["NetworkMode"] = opts.network_mode
        if res.cpus is not None:
            hc["NanoCpus"] = int(res.cpus * 1e9)
        if res.memory is not None:
            hc["Memory"] = res.memory
            hc["MemorySwap"] = res.memory_swap if res.memory_swap is not None else res.memory
        if res.pids is not None:
            hc["PidsLimit"] = res.pids
        if res.shm_size is not None:
            hc["ShmSize"] = res.shm_size
        if opts.mounts:
            mounts = []
            for m in opts.mounts:
                item: dict[str, Any] = {"Type": m.type, "Target": m.target, "ReadOnly": m.read_only}
                if m.source:
                    item["Source"] = m.source
                mounts.append(item)
            hc["Mounts"] = mounts
        for key, val in (
            ("CapAdd", opts.cap_add),
            ("CapDrop", opts.cap_drop),
            ("SecurityOpt", opts.security_opt),
            ("Dns", opts.dns),
        ):
            if val:
                hc[key] = list(val)
        body: dict[str, Any] = {
            "Image": launch.image,
            "Env": [f"{k}={v}" for k, v in launch.env.items()],
            "Labels": dict(labels),
            "HostConfig": hc,
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": False,
        }
        if launch.command:
            body["Entrypoint"] = [launch.command[0]]
            body["Cmd"] = list(launch.command[1:])
        if opts.user:
            body["User"] = opts.user
        if opts.workdir:
            body["WorkingDir"] = opts.workdir
        if opts.stop_timeout is not None:
            body["StopTimeout"] = opts.stop_timeout
        return body

    def _place(self, opts: DockerPoolOptions) -> _Host:
        allowed = list(opts.hosts) or self._order
        unknown = [h for h in allowed if h not in self._hosts]
        if unknown:
            raise ProviderPermanentError(f"provider_options.hosts: unknown docker host(s) {', '.join(unknown)}")
        active: dict[str, int] = dict.fromkeys(self._order, 0)
        for info in self._known.values():
            if info.host in active and info.status not in _TERMINAL:
                active[info.host] += 1
        loads = [
            HostLoad(n, active[n] + self._hosts[n].reserved, self._hosts[n].cap, self._hosts[n].healthy)
            for n in allowed
        ]
        chosen = choose_host(loads, self.settings.placement)
        if chosen is None:
            down = [h.name for h in loads if not h.healthy]
            why = f"unhealthy: {', '.join(down)}" if down else "all at their per-host cap"
            raise ProviderTemporaryError(f"no docker host can take a runner now ({why})")
        host = self._hosts[chosen]
        host.reserved += 1
        return host

    async def _registry_auth(self, opts: DockerPoolOptions) -> str | None:
        if opts.registry_auth_file is None:
            return None
        path: Path = opts.registry_auth_file
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
            auth = json.loads(text)
        except (OSError, ValueError) as exc:
            raise ProviderPermanentError(f"registry_auth_file {path}: {type(exc).__name__}") from None
        if not isinstance(auth, dict):
            raise ProviderPermanentError(f"registry_auth_file {path}: expected a JSON object")
        return registry_auth_header(auth)

    async def _pull(self, host: _Host, image: str, opts: DockerPoolOptions) -> None:
        auth = await self._registry_auth(opts)
        last: dict[str, float] = {"t": 0.0}
        log.info("docker pull", provider=self.name, host=host.name, image=image)

        def progress(item: Mapping[str, Any]) -> None:
            now = time.monotonic()
            if now - last["t"] >= 2.0:
                last["t"] = now
                log.info(
                    "docker pull progress",
                    host=host.name,
                    image=image,
                    status=item.get("status"),
                    layer=item.get("id"),
                    progress=item.get("progress"),
                )

        await host.client.pull(image, auth, progress)
        log.info("docker pull done", provider=self.name, host=host.name, image=image)

    async def _upload(self, host: _Host, cid: str, launch: LaunchSpec, opts: DockerPoolOptions) -> None:
        """All credential files in one archive upload (each archive call mounts
        the container's file system, so the number of calls is what costs).
        Missing parent directories are created 0700 for the file owner; which
        directories an image has is learned once per host and image."""
        files = launch.files
        if not files:
            return
        dirs: set[str] = set()
        for f in files:
            if not f.path.startswith("/") or f.path.endswith("/") or ".." in f.path.split("/"):
                raise ProviderPermanentError(f"credential file path {f.path!r} must be an absolute file path")
            d = posixpath.dirname(f.path)
            while d != "/":
                dirs.add(d)
                d = posixpath.dirname(d)
        key = (host.name, launch.image)
        known = self._dir_cache.get(key)
        if known is None:
            if len(self._dir_cache) >= 256:
                self._dir_cache.clear()
            known = self._dir_cache[key] = {}
        for d in sorted(dirs, key=lambda x: x.count("/")):
            if d not in known:
                parent = posixpath.dirname(d)
                if parent != "/" and known.get(parent) is False:
                    known[d] = False
                else:
                    known[d] = await host.client.path_exists(cid, d)
        missing = sorted((d for d in dirs if not known[d]), key=lambda x: x.count("/"))
        await host.client.put_archive(cid, "/", credential_tar(list(files), "/", opts.owner(), missing))

    async def _start(self, host: _Host, cid: str, launch: LaunchSpec, opts: DockerPoolOptions) -> dict[str, Any]:
        await self._upload(host, cid, launch, opts)
        try:
            await host.client.start(cid)
        except (EngineRefused, ProviderTemporaryError) as exc:
            if start_failure_is_permanent(str(exc)):
                raise ProviderPermanentError(str(exc)) from None
            raise
        data = await host.client.inspect(cid)
        if data is None:
            raise ProviderTemporaryError(f"container {launch.name} vanished right after start")
        return data

    async def _adopt(
        self, host: _Host, data: dict[str, Any], launch: LaunchSpec, opts: DockerPoolOptions
    ) -> InstanceInfo:
        labels = dict((data.get("Config") or {}).get("Labels") or {})
        if not self._ours(labels):
            raise ProviderPermanentError(
                f"docker host {host.name}: a container named {launch.name} exists but is not managed by "
                f"controller {self.controller_id} / provider {self.name}"
            )
        state = data.get("State") or {}
        if state.get("Status") == "created":  # a create that died before start: finish it
            data = await self._start(host, str(data["Id"]), launch, opts)
        log.info("docker container adopted", provider=self.name, host=host.name, instance=launch.name)
        info = self._remember(host, data)
        self._observe(info)
        return info

    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        self._creating.add(launch.name)
        try:
            return await self._create(launch)
        finally:
            self._creating.discard(launch.name)

    async def _create(self, launch: LaunchSpec) -> InstanceInfo:
        self._ensure_started()
        if not _NAME.match(launch.name):
            raise ProviderPermanentError(f"{launch.name!r} is not a valid container name")
        opts = self.pool_options(launch.options)
        if not self._synced:
            await self.list()  # placement needs the hosts' current load
        # With several hosts the name may live on another one: look first. With
        # one, the create's 409 is the look (one round trip less).
        if len(self._hosts) > 1 or launch.name in self._known:
            found = await self._find(launch.name)
            if found is not None:
                return await self._adopt(found[0], found[1], launch, opts)
        host = self._place(opts)
        labels = {**self._stamps(launch, opts), LABEL_HOST: host.name}
        try:
            if opts.privileged:
                log.warning(
                    "privileged container requested by pool",
                    provider=self.name,
                    pool=launch.pool,
                    instance=launch.name,
                    host=host.name,
                )
            if opts.pull == "always":
                await self._pull(host, launch.image, opts)
            body = self._body(launch, opts, labels)
            try:
                cid = await host.client.create(launch.name, body)
            except Conflict:
                # another creator holds the name (it may not be inspectable yet)
                data = None
                for _ in range(50):
                    data = await host.client.inspect(launch.name)
                    if data is not None:
                        break
                    await asyncio.sleep(0.1)
                if data is None:
                    raise ProviderTemporaryError(
                        f"{launch.name}: name taken by a container being created or removed"
                    ) from None
                return await self._adopt(host, data, launch, opts)
            except EngineRefused as exc:
                if exc.status != 404 or opts.pull == "never":
                    raise
                await self._pull(host, launch.image, opts)
                cid = await host.client.create(launch.name, body)
            self._known[launch.name] = InstanceInfo(launch.name, InstanceStatus.STARTING, labels, host=host.name)
            try:
                data = await self._start(host, cid, launch, opts)
            except ProviderTemporaryError:
                # leave nothing half-made behind a retry: it starts again from scratch
                with contextlib.suppress(ProviderError):
                    await host.client.remove(cid)
                self._known.pop(launch.name, None)
                raise
        except HostUnavailable as exc:
            self._mark_down(host, exc)
            raise
        finally:
            host.reserved -= 1
        info = self._remember(host, data)
        self._observe(info)
        log.info("docker container started", provider=self.name, host=host.name, instance=launch.name)
        return info

    # -- delete ---------------------------------------------------------------------------
    async def delete(self, name: str) -> None:
        self._ensure_started()
        found = await self._find(name)
        if found is None:
            self._known.pop(name, None)
            return
        host, data = found
        labels = dict((data.get("Config") or {}).get("Labels") or {})
        if not self._ours(labels):
            log.warning(
                "not deleting a container this provider does not own", provider=self.name, host=host.name, instance=name
            )
            return
        try:
            await host.client.remove(str(data["Id"]))
        except HostUnavailable as exc:
            self._mark_down(host, exc)
            raise
        self._known.pop(name, None)
        self._terminal.pop(str(data["Id"]), None)

    # -- check ------------------------------------------------------------------------------
    async def check(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        findings: list[Finding] = []
        subject = f"provider {self.name}"
        parsed: dict[str, tuple[DockerPoolOptions, str | None]] = {}
        for pool, raw in pools.items():
            raw = dict(raw)
            image = raw.pop("image", None)  # the pool's image, when the caller passes it
            try:
                opts = self.pool_options(raw)
            except ProviderPermanentError as exc:
                findings.append(Finding("error", f"{subject} pool {pool}", str(exc)))
                continue
            parsed[pool] = (opts, str(image) if image else None)
            if opts.privileged:
                findings.append(
                    Finding("warning", f"{subject} pool {pool}", "privileged containers (docker-in-docker)")
                )
            unknown = [h for h in opts.hosts if h not in self._hosts]
            if unknown:
                findings.append(Finding("error", f"{subject} pool {pool}", f"unknown host(s) {', '.join(unknown)}"))

        async def probe(host: _Host) -> list[Finding]:
            out: list[Finding] = []
            sub = f"{subject} host {host.name}"
            if host.cfg.url.startswith("tcp://") and host.cfg.tls is None:
                out.append(Finding("warning", sub, "plain TCP without TLS: anyone who reaches the port owns the host"))
            socket_path = host.cfg.url.removeprefix("unix://") if host.cfg.url.startswith("unix://") else None
            if socket_path is not None and not await asyncio.to_thread(os.path.exists, socket_path):
                return [*out, Finding("error", sub, f"docker socket {socket_path} does not exist "
                                      f"(is dockerd running there? hosts[].url is {host.cfg.url})")]
            try:
                api = await host.client.ping()
                ver = await host.client.version()
                await host.client.list_containers(self._labels_filter(host), limit=1)
            except HostUnavailable as exc:
                msg = f"{host.cfg.url}: {exc}"
                if "permission denied" in msg.lower():
                    msg += " (the scaler's user needs access to the docker socket)"
                return [*out, Finding("error", sub, msg)]
            except ProviderError as exc:
                return [*out, Finding("error", sub, str(exc))]
            api = api or str(ver.get("ApiVersion", ""))
            try:
                major, minor = (int(x) for x in api.split(".")[:2])
                old = (major, minor) < _MIN_API
            except ValueError:
                old = False
            level = "warning" if old else "ok"
            out.append(
                Finding(
                    level,
                    sub,
                    f"docker {ver.get('Version', '?')} (API {api}"
                    f"{', older than 1.41' if old else ''}), {ver.get('Os', '?')}/{ver.get('Arch', '?')}",
                )
            )
            for pool, (opts, image) in parsed.items():
                if (opts.hosts and host.name not in opts.hosts) or image is None:
                    continue
                psub = f"{sub} pool {pool}"
                try:
                    if await host.client.inspect_image(image) is not None:
                        out.append(Finding("ok", psub, f"image {image} present"))
                    elif opts.pull == "never":
                        out.append(Finding("error", psub, f"image {image} missing and pull: never"))
                    else:
                        await host.client.distribution(image, await self._registry_auth(opts))
                        out.append(Finding("ok", psub, f"image {image} not present, pullable"))
                except ProviderError as exc:
                    out.append(Finding("error", psub, f"image {image}: {exc}"))
            return out

        for result in await asyncio.gather(*(probe(h) for h in self._hosts.values())):
            findings.extend(result)
        return findings
