"""The libvirt provider: one transient domain per runner.

Per instance, in the provider's storage pool on the chosen host:

* ``<name>.overlay.qcow2`` — copy-on-write overlay on the base image;
* ``<name>.seed.iso`` — the NoCloud seed (credentials, launcher, stamp);
* a *transient* domain ``<name>`` whose ``<metadata>`` carries the stamps.

Exits. A transient domain disappears when it stops, so the volumes are the
evidence that an instance existed: an instance whose volumes are there but
whose domain is gone is reported EXITED until ``delete`` removes the volumes.
How it ended comes from the life-cycle event (guest power-off → exit code 0;
crash / failure / destroyed by someone else → FAILED) when this provider
object was connected at the time; otherwise (the scaler or libvirtd was down
when it happened) the instance is EXITED with ``exit_code=None`` and a reason
saying the exit was not observed. The seed carries a non-secret copy of the
stamps (``runner-scaler/stamp.json``) so even a restarted scaler can tell
which controller and pool a domain-less instance belonged to.

All libvirt calls are blocking; they run on a bounded thread pool owned by the
provider, each with a timeout. Events are dispatched by one process-wide
thread running libvirt's default event loop implementation.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import libvirt
from pydantic import ValidationError

from providers.libvirt.domainxml import NS_URI, DomainPlan, Stamp, parse_metadata, render_domain
from providers.libvirt.options import LibvirtHost, LibvirtPoolOptions, LibvirtSettings
from providers.libvirt.seed import build_seed, read_stamp
from scaler.errors import ProviderError, ProviderPermanentError, ProviderTemporaryError
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_CREATED_AT,
    LABEL_POOL,
    LABEL_RUNNER_NAME,
    Finding,
    InstanceInfo,
    InstanceStatus,
    LaunchSpec,
    ProviderSettings,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

OVERLAY_SUFFIX = ".overlay.qcow2"
SEED_SUFFIX = ".seed.iso"
# How long a domain that vanished without a life-cycle event (yet) is still
# reported RUNNING: the event and the domain's removal race inside libvirtd.
EVENT_GRACE = 3.0
WATCH_QUEUE_MAX = 1000

_PERMANENT_CODES = {
    getattr(libvirt, n)
    for n in (
        "VIR_ERR_XML_ERROR",
        "VIR_ERR_XML_DETAIL",
        "VIR_ERR_CONFIG_UNSUPPORTED",
        "VIR_ERR_NO_STORAGE_POOL",
        "VIR_ERR_NO_STORAGE_VOL",
        "VIR_ERR_INVALID_ARG",
        "VIR_ERR_NO_SUPPORT",
        "VIR_ERR_NO_NETWORK",
        "VIR_ERR_INVALID_STORAGE_POOL",
        "VIR_ERR_INVALID_STORAGE_VOL",
    )
    if hasattr(libvirt, n)
}

# --- the process-wide event loop thread ------------------------------------

_event_lock = threading.Lock()
_event_thread: threading.Thread | None = None


def _event_loop_forever() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # keep dispatching whatever one callback did
            log.exception("libvirt event loop iteration failed")
            time.sleep(0.1)


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation (before any connection
    is opened) and run it on a daemon thread; once per process."""
    global _event_thread
    with _event_lock:
        if _event_thread is not None:
            return
        # libvirt prints every error to stderr by default; they are raised anyway
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        _event_thread = threading.Thread(target=_event_loop_forever, name="libvirt-events", daemon=True)
        _event_thread.start()


# --- bookkeeping -------------------------------------------------------------


@dataclass
class _Host:
    cfg: LibvirtHost
    lock: threading.Lock = field(default_factory=threading.Lock)
    conn: Any = None
    event_id: int | None = None
    dead: bool = False  # set by the close callback; the next call reconnects
    last_error: str | None = None
    reserved_vcpus: int = 0
    reserved_mib: int = 0
    extra: list[Any] = field(default_factory=list)  # more connections, for creates
    turn: int = 0

    @property
    def uri(self) -> str:
        return self.cfg.uri


@dataclass
class _Known:
    host: str
    labels: dict[str, str]
    created_at: float | None
    last: InstanceStatus = InstanceStatus.STARTING
    gone_since: float | None = None  # first time the domain was seen missing


@dataclass(frozen=True, slots=True)
class _Seen:
    name: str
    host: str
    stamp: Stamp
    state: int | None  # libvirt domain state; None = domain gone, volumes remain


def _code(exc: libvirt.libvirtError) -> int:
    return int(exc.get_error_code() or 0)


def _wrap(exc: libvirt.libvirtError, what: str) -> ProviderError:
    msg = f"{what}: {exc.get_error_message() or exc}"
    if _code(exc) in _PERMANENT_CODES:
        return ProviderPermanentError(msg)
    return ProviderTemporaryError(msg)


def _created_at(labels: Mapping[str, str], fallback: float | None) -> float | None:
    try:
        return float(labels[LABEL_CREATED_AT])
    except (KeyError, ValueError):
        return fallback


class LibvirtProvider:
    settings_model: ClassVar[Any] = LibvirtSettings
    pool_options_model: ClassVar[Any] = LibvirtPoolOptions

    def __init__(self, settings: ProviderSettings) -> None:
        self.name: str = settings.name
        self._controller: str = settings.controller_id
        try:
            self._cfg = LibvirtSettings.model_validate(dict(settings.options))
        except ValidationError as exc:
            raise ProviderPermanentError(f"provider {self.name}: invalid options: {exc}") from None
        ensure_event_loop()
        self._hosts = [_Host(h) for h in self._cfg.hosts]
        self._by_uri = {h.uri: h for h in self._hosts}
        self._executor = ThreadPoolExecutor(
            max_workers=self._cfg.max_concurrency, thread_name_prefix=f"libvirt-{self.name}"
        )
        self._lock = threading.Lock()  # guards the dicts below (worker + event threads)
        self._place_lock = threading.Lock()
        self._known: dict[str, _Known] = {}
        self._exits: dict[str, tuple[InstanceStatus, int | None, str | None]] = {}
        self._stamps: dict[tuple[str, str], Stamp] = {}
        self._creating: dict[str, LaunchSpec] = {}
        self._deleting: set[str] = set()
        self._watchers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[InstanceInfo]]] = []
        self._closed = False

    # --- plumbing ---------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise ProviderTemporaryError(f"provider {self.name} is closed")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, functools.partial(fn, *args))
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for drops a
            # cancellation that arrives as the call completes, and the
            # cancelled caller (a stopping loop) then runs on
            async with asyncio.timeout(self._cfg.call_timeout):
                return await fut
        except TimeoutError:
            raise ProviderTemporaryError(
                f"provider {self.name}: libvirt call took longer than {self._cfg.call_timeout}s"
            ) from None
        except libvirt.libvirtError as exc:
            raise _wrap(exc, f"provider {self.name}") from None

    def _conn(self, host: _Host) -> Any:
        """An open connection to ``host`` (reconnecting when it died)."""
        with host.lock:
            conn = host.conn
            if conn is not None and not host.dead:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
            if conn is not None:
                self._drop_conn(host)
            try:
                conn = libvirt.open(host.uri)
            except libvirt.libvirtError as exc:
                host.last_error = exc.get_error_message() or str(exc)
                raise ProviderTemporaryError(f"libvirt host {host.uri} unreachable: {host.last_error}") from None
            with contextlib.suppress(libvirt.libvirtError):
                conn.setKeepAlive(5, 3)
            with contextlib.suppress(libvirt.libvirtError):
                conn.registerCloseCallback(self._on_close, host)
            try:
                host.event_id = conn.domainEventRegisterAny(
                    None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, host
                )
            except libvirt.libvirtError as exc:
                log.warning("libvirt host %s: no life-cycle events (%s); relying on list", host.uri, exc)
                host.event_id = None
            host.conn, host.dead, host.last_error = conn, False, None
            return conn

    def _work_conn(self, host: _Host) -> Any:
        """A connection for a heavy call (create): round robin over
        ``connections_per_host`` extra connections (no events on those)."""
        primary = self._conn(host)
        slots = self._cfg.connections_per_host
        if slots <= 1:
            return primary
        with host.lock:
            # the primary connection stays free for look-ups, placement and events
            host.turn = (host.turn + 1) % slots
            i = host.turn
            while len(host.extra) <= i:
                host.extra.append(None)
            conn = host.extra[i]
            try:
                if conn is not None and conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            if conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            try:
                conn = libvirt.open(host.uri)
            except libvirt.libvirtError:
                host.extra[i] = None
                return primary
            with contextlib.suppress(libvirt.libvirtError):
                conn.setKeepAlive(5, 3)
            host.extra[i] = conn
            return conn

    def _drop_conn(self, host: _Host) -> None:
        extra, host.extra = host.extra, []
        for c in extra:
            if c is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    c.close()
        conn, host.conn = host.conn, None
        if conn is None:
            return
        if host.event_id is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.domainEventDeregisterAny(host.event_id)
            host.event_id = None
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    def _on_close(self, _conn: Any, reason: int, host: _Host) -> None:
        # event thread: only mark; the next call on a worker reconnects
        host.dead = True
        log.warning("libvirt host %s: connection closed (reason %s)", host.uri, reason)

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, host: _Host) -> None:
        if event != libvirt.VIR_DOMAIN_EVENT_STOPPED:
            return
        try:
            name = dom.name()
        except libvirt.libvirtError:
            return
        if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
            outcome: tuple[InstanceStatus, int | None, str | None] = (InstanceStatus.EXITED, 0, None)
        elif detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED:
            outcome = (InstanceStatus.FAILED, None, "guest crashed")
        elif detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
            outcome = (InstanceStatus.FAILED, None, "domain destroyed outside the scaler")
        elif detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
            return
        else:
            outcome = (InstanceStatus.FAILED, None, f"domain stopped (libvirt detail {detail})")
        with self._lock:
            known = self._known.get(name)
            if known is None or name in self._deleting or known.host != host.uri:
                return
            self._exits[name] = outcome
            known.last = outcome[0]
            info = InstanceInfo(
                name, outcome[0], dict(known.labels), known.created_at, outcome[1], outcome[2], host.uri
            )
            watchers = list(self._watchers)
        for loop, queue in watchers:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(_offer, queue, info)

    def _hosts_for(self, name: str) -> list[_Host]:
        with self._lock:
            known = self._known.get(name)
        if known is None or known.host not in self._by_uri:
            return list(self._hosts)
        first = self._by_uri[known.host]
        return [first, *(h for h in self._hosts if h is not first)]

    def _storage_pool(self, conn: Any, host: _Host) -> Any:
        try:
            pool = conn.storagePoolLookupByName(self._cfg.storage_pool)
        except libvirt.libvirtError as exc:
            raise _wrap(exc, f"host {host.uri}: storage pool {self._cfg.storage_pool}") from None
        if not pool.isActive():
            raise ProviderTemporaryError(f"host {host.uri}: storage pool {self._cfg.storage_pool} is not active")
        return pool

    # --- reading instances ------------------------------------------------

    def _dom_stamp(self, dom: Any) -> Stamp | None:
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NS_URI, 0)
        except libvirt.libvirtError:
            return None
        return parse_metadata(text)

    def _vol_stamp(self, conn: Any, host: _Host, vol: Any, name: str) -> Stamp | None:
        key = (host.uri, name)
        with self._lock:
            cached = self._stamps.get(key)
        if cached is not None:
            return cached
        try:
            data = _download(conn, vol)
            labels = read_stamp(data)
        except (libvirt.libvirtError, ValueError, Exception) as exc:  # pycdlib raises its own errors
            log.debug("host %s: seed of %s unreadable: %s", host.uri, name, exc)
            return None
        stamp = Stamp(labels, _created_at(labels, None))
        with self._lock:
            self._stamps[key] = stamp
        return stamp

    def _ours(self, stamp: Stamp | None) -> bool:
        return stamp is not None and stamp.labels.get(LABEL_CONTROLLER) == self._controller

    def _scan_host(self, host: _Host) -> dict[str, _Seen]:
        conn = self._conn(host)
        out: dict[str, _Seen] = {}
        for dom in conn.listAllDomains(0):
            stamp = self._dom_stamp(dom)
            if not self._ours(stamp):
                continue
            assert stamp is not None
            try:
                state = int(dom.state()[0])
                name = dom.name()
            except libvirt.libvirtError:
                continue  # vanished meanwhile; the volumes tell below
            out[name] = _Seen(name, host.uri, stamp, state)
        pool = self._storage_pool(conn, host)
        for vol in pool.listAllVolumes(0):
            vname = vol.name()
            if vname.endswith(SEED_SUFFIX):
                name = vname[: -len(SEED_SUFFIX)]
                if name in out:
                    continue
                stamp = self._vol_stamp(conn, host, vol, name)
                if self._ours(stamp):
                    assert stamp is not None
                    out[name] = _Seen(name, host.uri, stamp, None)
            elif vname.endswith(OVERLAY_SUFFIX):
                name = vname[: -len(OVERLAY_SUFFIX)]
                with self._lock:
                    known = self._known.get(name)
                if name not in out and known is not None and known.host == host.uri:
                    out.setdefault(name, _Seen(name, host.uri, Stamp(known.labels, known.created_at), None))
        return out

    def _find_on_host(self, host: _Host, name: str) -> _Seen | None:
        conn = self._conn(host)
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if _code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                raise _wrap(exc, f"host {host.uri}: lookup {name}") from None
            dom = None
        if dom is not None:
            stamp = self._dom_stamp(dom)
            if stamp is not None and self._ours(stamp):
                try:
                    return _Seen(name, host.uri, stamp, int(dom.state()[0]))
                except libvirt.libvirtError:
                    pass  # stopped just now: fall through to the volumes
            # not ours, or stopping (metadata unreadable): the seed's stamp decides
        pool = self._storage_pool(conn, host)
        seed = _vol(pool, name + SEED_SUFFIX)
        if seed is not None:
            stamp = self._vol_stamp(conn, host, seed, name)
            return _Seen(name, host.uri, stamp, None) if self._ours(stamp) and stamp is not None else None
        with self._lock:
            known = self._known.get(name)
        if known is not None and known.host == host.uri and _vol(pool, name + OVERLAY_SUFFIX) is not None:
            return _Seen(name, host.uri, Stamp(known.labels, known.created_at), None)
        return None

    def _info(self, seen: _Seen) -> InstanceInfo:
        labels = dict(seen.stamp.labels)
        created = _created_at(labels, seen.stamp.created_at)
        now = time.monotonic()
        with self._lock:
            known = self._known.get(seen.name)
            if known is None:
                # first sight: only a domain seen running earlier gets the event grace
                first = InstanceStatus.RUNNING if seen.state is not None else InstanceStatus.EXITED
                known = self._known[seen.name] = _Known(seen.host, labels, created, first)
            exit_rec = self._exits.get(seen.name)
            status: InstanceStatus
            code: int | None
            reason: str | None
            if seen.state is not None:
                known.gone_since = None
                if seen.state == libvirt.VIR_DOMAIN_CRASHED:
                    status, code, reason = InstanceStatus.FAILED, None, "guest crashed"
                elif seen.state == libvirt.VIR_DOMAIN_SHUTOFF:
                    status, code, reason = exit_rec or (InstanceStatus.EXITED, None, "domain shut off")
                else:
                    status, code, reason = InstanceStatus.RUNNING, None, None
            elif exit_rec is not None:
                status, code, reason = exit_rec
            else:
                if known.gone_since is None:
                    known.gone_since = now
                if known.last in (InstanceStatus.RUNNING, InstanceStatus.STARTING) and (
                    now - known.gone_since < EVENT_GRACE and self._host_connected(seen.host)
                ):
                    # the life-cycle event is probably on its way
                    status, code, reason = InstanceStatus.RUNNING, None, None
                else:
                    status, code, reason = InstanceStatus.EXITED, None, "domain gone; exit not observed"
            known.last = status
        return InstanceInfo(seen.name, status, labels, created, code, reason, seen.host)

    def _host_connected(self, uri: str) -> bool:
        host = self._by_uri.get(uri)
        return host is not None and host.conn is not None and not host.dead

    def _starting_info(self, name: str) -> InstanceInfo | None:
        with self._lock:
            spec = self._creating.get(name)
        if spec is None:
            return None
        labels = self._stamp_labels(spec)
        return InstanceInfo(name, InstanceStatus.STARTING, labels, _created_at(labels, None))

    def _get_sync(self, name: str) -> InstanceInfo | None:
        starting = self._starting_info(name)
        if starting is not None:
            return starting
        return self._lookup(name)

    def _lookup(self, name: str) -> InstanceInfo | None:
        errors: list[str] = []
        for host in self._hosts_for(name):
            try:
                seen = self._find_on_host(host, name)
            except ProviderTemporaryError as exc:
                errors.append(str(exc))
                continue
            except libvirt.libvirtError as exc:  # e.g. the connection broke mid-call
                err = _wrap(exc, f"host {host.uri}")
                if isinstance(err, ProviderPermanentError):
                    raise err from None
                errors.append(str(err))
                continue
            if seen is not None:
                return self._info(seen)
        if errors:
            raise ProviderTemporaryError(f"{name}: not found on reachable hosts; " + "; ".join(errors))
        return None

    def _list_sync(self) -> list[InstanceInfo]:
        out: dict[str, InstanceInfo] = {}
        for host in self._hosts:
            try:
                seen = self._scan_host(host)
            except (ProviderError, libvirt.libvirtError) as exc:
                log.warning("libvirt host %s skipped: %s", host.uri, exc)
                # keep reporting what we knew there, so nothing looks vanished
                with self._lock:
                    stale = [(n, k) for n, k in self._known.items() if k.host == host.uri]
                for n, k in stale:
                    out[n] = InstanceInfo(n, k.last, dict(k.labels), k.created_at, None, "host unreachable", host.uri)
                continue
            for s in seen.values():
                out[s.name] = self._info(s)
            with self._lock:  # forget what is gone for good (deleted by someone else)
                for n in [n for n, k in self._known.items() if k.host == host.uri and n not in seen]:
                    if n not in self._creating:
                        self._forget_locked(n)
        with self._lock:
            creating = list(self._creating)
        for n in creating:
            info = self._starting_info(n)
            if info is not None:
                out[n] = info
        return sorted(out.values(), key=lambda i: i.name)

    def _forget_locked(self, name: str) -> None:
        known = self._known.pop(name, None)
        self._exits.pop(name, None)
        if known is not None:
            self._stamps.pop((known.host, name), None)
        for key in [k for k in self._stamps if k[1] == name]:
            self._stamps.pop(key, None)

    # --- create -------------------------------------------------------------

    def _stamp_labels(self, spec: LaunchSpec) -> dict[str, str]:
        labels = dict(spec.labels)
        labels[LABEL_CONTROLLER] = self._controller
        labels.setdefault(LABEL_POOL, spec.pool)
        labels.setdefault(LABEL_RUNNER_NAME, spec.name)
        return labels

    def _place(self, opts: LibvirtPoolOptions) -> _Host:
        best: tuple[float, _Host] | None = None
        reachable = 0
        with self._place_lock:
            for host in self._hosts:
                try:
                    conn = self._conn(host)
                    node = conn.getInfo()
                    used_v = used_m = 0
                    with self._lock:
                        creating = set(self._creating)
                    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                        if dom.name() in creating:
                            # counted by its reservation; and info() would wait for its start job
                            continue
                        with contextlib.suppress(libvirt.libvirtError):
                            info = dom.info()
                            used_v += int(info[3])
                            used_m += int(info[1]) // 1024
                except (ProviderError, libvirt.libvirtError) as exc:
                    log.warning("libvirt host %s skipped for placement: %s", host.uri, exc)
                    continue
                reachable += 1
                cap_v = host.cfg.max_vcpus or int(node[2])
                cap_m = host.cfg.max_memory_mib or int(node[1])
                free_v = cap_v - used_v - host.reserved_vcpus
                free_m = cap_m - used_m - host.reserved_mib
                if free_v < opts.vcpus or free_m < opts.memory_mib:
                    continue
                score = free_v / max(cap_v, 1) + free_m / max(cap_m, 1)
                if best is None or score > best[0]:
                    best = (score, host)
            if best is None:
                if reachable == 0:
                    raise ProviderTemporaryError(f"provider {self.name}: no libvirt host reachable")
                raise ProviderTemporaryError(
                    f"provider {self.name}: no host has {opts.vcpus} vCPUs and {opts.memory_mib} MiB free",
                    retry_after=10.0,
                )
            host = best[1]
            host.reserved_vcpus += opts.vcpus
            host.reserved_mib += opts.memory_mib
            return host

    def _unreserve(self, host: _Host, opts: LibvirtPoolOptions) -> None:
        with self._place_lock:
            host.reserved_vcpus -= opts.vcpus
            host.reserved_mib -= opts.memory_mib

    def _create_sync(self, spec: LaunchSpec) -> InstanceInfo:
        with self._lock:
            if spec.name in self._creating:
                raise ProviderTemporaryError(f"{spec.name}: a create is already in progress")
            if spec.name in self._deleting:
                raise ProviderTemporaryError(f"{spec.name}: being deleted")
            self._creating[spec.name] = spec  # claimed: a concurrent create of it waits
        try:
            try:
                existing = self._lookup(spec.name)
            except ProviderTemporaryError:
                with self._lock:
                    known = self._known.get(spec.name)
                if known is not None:  # it lives on a host that does not answer
                    raise
                existing = None
            if existing is not None:
                return existing  # adopt
            self._check_name_free(spec.name)
            try:
                opts = LibvirtPoolOptions.model_validate(dict(spec.options))
            except ValidationError as exc:
                raise ProviderPermanentError(f"{spec.name}: invalid provider options: {exc}") from None
            host = self._place(opts)
            try:
                return self._create_on_host(host, spec, opts)
            finally:
                self._unreserve(host, opts)
        finally:
            with self._lock:
                self._creating.pop(spec.name, None)

    def _check_name_free(self, name: str) -> None:
        """A domain of that name that is not ours is a permanent conflict."""
        for host in self._hosts:
            try:
                conn = self._conn(host)
                dom = conn.lookupByName(name)
            except (ProviderError, libvirt.libvirtError):
                continue
            if not self._ours(self._dom_stamp(dom)):
                raise ProviderPermanentError(
                    f"{name}: a domain of that name not made by this controller exists on {host.uri}"
                )

    def _create_on_host(self, host: _Host, spec: LaunchSpec, opts: LibvirtPoolOptions) -> InstanceInfo:
        conn = self._work_conn(host)
        pool = self._storage_pool(conn, host)
        image = spec.image or opts.base_image
        if not image:
            raise ProviderPermanentError(f"{spec.name}: no base image (LaunchSpec.image or base_image)")
        try:
            base = conn.storageVolLookupByPath(image) if image.startswith("/") else pool.storageVolLookupByName(image)
        except libvirt.libvirtError:
            raise ProviderPermanentError(
                f"{spec.name}: base image {image!r} not found in storage pool {self._cfg.storage_pool} on {host.uri}"
            ) from None
        labels = self._stamp_labels(spec)
        created = time.time()
        labels.setdefault(LABEL_CREATED_AT, f"{created:.3f}")
        try:
            seed_bytes = build_seed(spec.name, spec.command, spec.env, spec.files, labels)
        except ValueError as exc:
            raise ProviderPermanentError(f"{spec.name}: {exc}") from None
        serial_log = f"{opts.serial_log_dir.rstrip('/')}/{spec.name}.log" if opts.serial_log_dir else None
        plan = DomainPlan(
            spec.name, self._cfg.storage_pool, spec.name + OVERLAY_SUFFIX, spec.name + SEED_SUFFIX,
            labels, created, serial_log,
        )
        try:
            xml = render_domain(plan, opts)
        except (ValueError, OSError) as exc:
            raise ProviderPermanentError(f"{spec.name}: domain template: {exc}") from None
        try:
            _delete_vol(pool, plan.overlay_volume)  # leftovers of an interrupted create
            _delete_vol(pool, plan.seed_volume)
            pool.createXML(_overlay_xml(plan.overlay_volume, base, opts), 0)
            seed = pool.createXML(_raw_volume_xml(plan.seed_volume, len(seed_bytes)), 0)
            _upload(conn, seed, seed_bytes)
            conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            with contextlib.suppress(libvirt.libvirtError):
                _delete_vol(pool, plan.overlay_volume)
                _delete_vol(pool, plan.seed_volume)
            raise _wrap(exc, f"{spec.name}: create on {host.uri}") from None
        with self._lock:
            self._known[spec.name] = _Known(host.uri, labels, _created_at(labels, created), InstanceStatus.RUNNING)
            self._exits.pop(spec.name, None)
            self._stamps[(host.uri, spec.name)] = Stamp(labels, created)
        return InstanceInfo(spec.name, InstanceStatus.RUNNING, labels, _created_at(labels, created), host=host.uri)

    # --- delete -------------------------------------------------------------

    def _delete_on_host(self, host: _Host, name: str) -> None:
        conn = self._conn(host)
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if _code(exc) != libvirt.VIR_ERR_NO_DOMAIN:
                raise _wrap(exc, f"host {host.uri}: lookup {name}") from None
            dom = None
        if dom is not None:
            if not self._ours(self._dom_stamp(dom)):
                return  # not ours: leave it (and its volumes) alone
            try:
                dom.destroy()
            except libvirt.libvirtError as exc:
                if _code(exc) not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
                    raise _wrap(exc, f"host {host.uri}: destroy {name}") from None
        pool = self._storage_pool(conn, host)
        seed = _vol(pool, name + SEED_SUFFIX)
        if seed is not None and dom is None and not self._ours(self._vol_stamp(conn, host, seed, name)):
            return
        try:
            _delete_vol(pool, name + SEED_SUFFIX)
            _delete_vol(pool, name + OVERLAY_SUFFIX)
        except libvirt.libvirtError as exc:
            raise _wrap(exc, f"host {host.uri}: remove volumes of {name}") from None

    def _delete_sync(self, name: str) -> None:
        """Delete on every host it may be on. A host that fails makes the call
        fail (temporary) when the instance lives there or when we do not know
        where it lives: "gone" must be certain before we say so."""
        with self._lock:
            self._deleting.add(name)
            known = self._known.get(name)
        try:
            failed: dict[str, str] = {}
            for host in self._hosts_for(name):
                try:
                    self._delete_on_host(host, name)
                except ProviderTemporaryError as exc:
                    failed[host.uri] = str(exc)
                except libvirt.libvirtError as exc:
                    err = _wrap(exc, f"host {host.uri}: delete {name}")
                    if isinstance(err, ProviderPermanentError):
                        raise err from None
                    failed[host.uri] = str(err)
            if failed and (known is None or known.host in failed):
                raise ProviderTemporaryError(f"delete {name}: " + "; ".join(failed.values()))
            with self._lock:
                self._forget_locked(name)
        finally:
            with self._lock:
                self._deleting.discard(name)

    # --- the protocol ---------------------------------------------------------

    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        return await self._call(self._create_sync, launch)

    async def delete(self, name: str) -> None:
        await self._call(self._delete_sync, name)

    async def get(self, name: str) -> InstanceInfo | None:
        return await self._call(self._get_sync, name)

    async def list(self) -> list[InstanceInfo]:
        return await self._call(self._list_sync)

    async def watch(self) -> AsyncIterator[InstanceInfo]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[InstanceInfo] = asyncio.Queue(maxsize=WATCH_QUEUE_MAX)
        entry = (loop, queue)
        with self._lock:
            self._watchers.append(entry)
        last: dict[str, InstanceStatus] = {}
        try:
            while not self._closed:
                try:
                    async with asyncio.timeout(self._cfg.list_interval):  # not wait_for: see _call
                        info = await queue.get()
                except TimeoutError:
                    pass
                else:
                    last[info.name] = info.status
                    yield info
                    continue
                try:
                    infos = await self.list()
                except ProviderError as exc:
                    log.warning("provider %s: backstop list failed: %s", self.name, exc)
                    continue
                for info in infos:
                    ended = info.status in (InstanceStatus.EXITED, InstanceStatus.FAILED)
                    if ended and last.get(info.name) != info.status:
                        yield info
                last = {i.name: i.status for i in infos}
        finally:
            with self._lock:
                if entry in self._watchers:
                    self._watchers.remove(entry)

    def _check_sync(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        findings: builtins.list[Finding] = []
        parsed: dict[str, LibvirtPoolOptions] = {}
        for pname, raw in pools.items():
            try:
                parsed[pname] = LibvirtPoolOptions.model_validate(dict(raw))
            except ValidationError as exc:
                findings.append(Finding("error", f"pool {pname}", f"invalid libvirt options: {exc}"))
        for host in self._hosts:
            subject = f"provider {self.name} host {host.uri}"
            try:
                conn = self._conn(host)
                version = conn.getLibVersion()
                node = conn.getInfo()
            except (ProviderError, libvirt.libvirtError) as exc:
                findings.append(Finding("error", subject, f"unreachable: {exc}"))
                continue
            dotted = f"{version // 1000000}.{version // 1000 % 1000}.{version % 1000}"
            findings.append(Finding("ok", subject, f"connected (libvirt {dotted})"))
            try:
                pool = self._storage_pool(conn, host)
            except ProviderError as exc:
                findings.append(Finding("error", subject, str(exc)))
                continue
            findings.append(Finding("ok", subject, f"storage pool {self._cfg.storage_pool} active"))
            cap_v = host.cfg.max_vcpus or int(node[2])
            cap_m = host.cfg.max_memory_mib or int(node[1])
            for pname, opts in parsed.items():
                if opts.base_image:
                    found = (
                        _vol_by_path(conn, opts.base_image) if opts.base_image.startswith("/")
                        else _vol(pool, opts.base_image)
                    )
                    if found is None:
                        findings.append(
                            Finding("error", subject, f"pool {pname}: base image {opts.base_image} missing")
                        )
                    else:
                        findings.append(
                            Finding("ok", subject, f"pool {pname}: base image {opts.base_image} present")
                        )
                if opts.vcpus > cap_v or opts.memory_mib > cap_m:
                    findings.append(
                        Finding("error", subject, f"pool {pname}: needs {opts.vcpus} vCPUs / {opts.memory_mib} MiB, "
                                f"host cap is {cap_v} / {cap_m} MiB")
                    )
            findings.append(Finding("ok", subject, f"capacity {cap_v} vCPUs, {cap_m} MiB"))
        return findings

    async def check(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        return await self._call(self._check_sync, pools)

    def _close_sync(self) -> None:
        for host in self._hosts:
            with host.lock:
                self._drop_conn(host)

    async def close(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await loop.run_in_executor(self._executor, self._close_sync)
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


def _offer(queue: asyncio.Queue[InstanceInfo], info: InstanceInfo) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # the backstop list catches up
        queue.put_nowait(info)


def _vol(pool: Any, name: str) -> Any:
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if _code(exc) == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def _vol_by_path(conn: Any, path: str) -> Any:
    try:
        return conn.storageVolLookupByPath(path)
    except libvirt.libvirtError:
        return None


def _delete_vol(pool: Any, name: str) -> None:
    vol = _vol(pool, name)
    if vol is None:
        return
    try:
        vol.delete(0)
    except libvirt.libvirtError as exc:
        if _code(exc) != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise


def _volume_format(vol: Any) -> str:
    try:
        el = ET.fromstring(vol.XMLDesc(0)).find("target/format")  # noqa: S314 (libvirtd's XML)
    except (libvirt.libvirtError, ET.ParseError):
        return "qcow2"
    return (el.get("type") if el is not None else None) or "raw"


def _overlay_xml(name: str, base: Any, opts: LibvirtPoolOptions) -> str:
    capacity = int(base.info()[1])
    if opts.disk_size_gib:
        capacity = max(capacity, opts.disk_size_gib << 30)
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", {"unit": "bytes"}).text = str(capacity)
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", {"type": "qcow2"})
    backing = ET.SubElement(root, "backingStore")
    ET.SubElement(backing, "path").text = base.path()
    ET.SubElement(backing, "format", {"type": _volume_format(base)})
    return ET.tostring(root, encoding="unicode")


def _raw_volume_xml(name: str, size: int) -> str:
    root = ET.Element("volume")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "capacity", {"unit": "bytes"}).text = str(size)
    target = ET.SubElement(root, "target")
    ET.SubElement(target, "format", {"type": "raw"})
    return ET.tostring(root, encoding="unicode")


def _upload(conn: Any, vol: Any, data: bytes) -> None:
    stream = conn.newStream(0)
    try:
        vol.upload(stream, 0, len(data), 0)
        view = memoryview(data)
        while view:
            sent = stream.send(bytes(view[: 1 << 18]))
            if sent < 0:
                raise libvirt.libvirtError("seed upload: stream send failed")
            view = view[sent:]
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise


def _download(conn: Any, vol: Any) -> bytes:
    stream = conn.newStream(0)
    chunks: list[bytes] = []
    try:
        vol.download(stream, 0, 0, 0)
        while True:
            chunk = stream.recv(1 << 18)
            if isinstance(chunk, int):
                if chunk == -2:
                    continue
                raise libvirt.libvirtError("seed download: stream recv failed")
            if not chunk:
                break
            chunks.append(chunk)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return b"".join(chunks)
