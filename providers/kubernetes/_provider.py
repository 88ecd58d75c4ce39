"""The Kubernetes provider: one Pod per runner, credentials in a Secret owned by the Pod."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError

from providers.kubernetes._client import build_api_client
from providers.kubernetes._options import KubernetesPoolOptions, KubernetesSettings
from providers.kubernetes._status import translate
from providers.kubernetes._template import MANAGED_BY, MANAGED_BY_VALUE, build_pod, build_secret, secret_name
from scaler.errors import ProviderPermanentError, ProviderTemporaryError
from scaler.provider import LABEL_CONTROLLER, Finding, InstanceInfo, LaunchSpec, ProviderSettings

T = TypeVar("T")

# Every (apiGroup, resource, verbs) the provider calls, in each namespace it uses.
# The Helm chart renders its Role from this; ``check`` verifies it with
# SelfSubjectAccessReviews. (SelfSubjectAccessReview itself is allowed to every
# authenticated user by the default ``system:basic-user`` ClusterRole.)
REQUIRED_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "pods", ("create", "delete", "get", "list", "watch")),
    ("", "secrets", ("create", "get", "update")),
)
# Only when leader election is enabled (``scaler.leader``), in the Lease's namespace.
LEADER_ELECTION_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("coordination.k8s.io", "leases", ("create", "get", "update")),
)


def _problems(exc: ValidationError, prefix: str) -> list[str]:
    return [
        f"{prefix}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else f"{prefix}: {e['msg']}"
        for e in exc.errors()
    ]


class KubernetesProvider:
    """Entry point ``kubernetes = "providers.kubernetes:KubernetesProvider"``."""

    settings_model: ClassVar[Any] = KubernetesSettings
    pool_options_model: ClassVar[Any] = KubernetesPoolOptions

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        api_client: Any | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = settings.name
        self.controller_id = settings.controller_id
        try:
            self.settings: KubernetesSettings = KubernetesSettings.model_validate(dict(settings.options))
        except ValidationError as exc:
            raise ProviderPermanentError("; ".join(_problems(exc, f"providers.{settings.name}.options"))) from exc
        self._clock = clock
        self._api_client = api_client
        self._own_client = api_client is None
        self._sem: asyncio.Semaphore | None = None
        self._where: dict[str, str] = {}  # pod name -> namespace, as last seen
        self._subscribers: set[asyncio.Queue[InstanceInfo | None]] = set()
        self._last_seen: dict[str, tuple[Any, ...]] = {}  # name -> last reported (status, exit code, reason)
        self._watchers: list[asyncio.Task[None]] = []
        self._open_responses: set[Any] = set()
        self._closed = False
        self.watch_restarts = 0  # reconnects of the watch (metrics / tests)
        self.watch_relists = 0  # re-lists after 410 Gone
        self.dropped_watch_events = 0

    # -- plumbing ---------------------------------------------------------------------
    @property
    def api_client(self) -> Any:
        if self._api_client is None:
            s = self.settings
            self._api_client = build_api_client(
                in_cluster=s.in_cluster,
                kubeconfig=s.kubeconfig,
                context=s.context,
                api_url=s.api_url,
                pool_size=s.api_concurrency + len(s.namespaces) + 2,
            )
        return self._api_client

    @property
    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def _selector(self) -> str:
        return f"{MANAGED_BY}={MANAGED_BY_VALUE},{LABEL_CONTROLLER}={self.controller_id}"

    async def _call(self, fn: Callable[[], T]) -> T:
        """Run one blocking client call in a thread, at most ``api_concurrency`` at once."""
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.settings.api_concurrency)
        async with self._sem:
            return await asyncio.to_thread(fn)

    async def _json(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Call a client method for its raw JSON body, mapping errors to the core's."""
        kwargs.setdefault("_request_timeout", self.settings.request_timeout)

        def run() -> dict[str, Any]:
            resp = fn(*args, _preload_content=False, **kwargs)
            try:
                data: dict[str, Any] = json.loads(resp.data or b"{}")
                return data
            finally:
                resp.release_conn()

        try:
            return await self._call(run)
        except Exception as exc:
            raise _map_error(exc) from exc

    def pool_options(self, options: Mapping[str, Any] | KubernetesPoolOptions) -> KubernetesPoolOptions:
        if isinstance(options, KubernetesPoolOptions):
            return options
        try:
            return KubernetesPoolOptions.model_validate(dict(options))
        except ValidationError as exc:
            raise ProviderPermanentError("; ".join(_problems(exc, "provider_options"))) from exc

    def _namespace(self, opts: KubernetesPoolOptions) -> str:
        ns = opts.namespace or self.settings.namespace
        if ns not in self.settings.namespaces:
            raise ProviderPermanentError(
                f"namespace {ns!r} is not one of provider {self.name}'s namespaces {list(self.settings.namespaces)}"
                " (add it to extra_namespaces)"
            )
        return ns

    def _info(self, pod: Mapping[str, Any]) -> InstanceInfo:
        meta = pod.get("metadata") or {}
        if meta.get("name") and meta.get("namespace"):
            self._where[str(meta["name"])] = str(meta["namespace"])
        return translate(pod, now=self._clock(), default_boot_timeout=self.settings.boot_timeout)

    def _ours(self, pod: Mapping[str, Any]) -> bool:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        return bool(labels.get(LABEL_CONTROLLER) == self.controller_id and labels.get(MANAGED_BY) == MANAGED_BY_VALUE)

    # -- reading -----------------------------------------------------------------------
    async def _read(self, name: str) -> dict[str, Any] | None:
        first = self._where.get(name)
        order = [first] if first else []
        order += [ns for ns in self.settings.namespaces if ns != first]
        for ns in order:
            try:
                pod = await self._json(self._core.read_namespaced_pod, name, ns)
            except _NotFound:
                continue
            if self._ours(pod):
                return pod
        self._where.pop(name, None)
        return None

    async def get(self, name: str) -> InstanceInfo | None:
        pod = await self._read(name)
        return None if pod is None else self._info(pod)

    async def list(self) -> builtins.list[InstanceInfo]:
        out: list[InstanceInfo] = []
        for ns in self.settings.namespaces:
            data = await self._json(self._core.list_namespaced_pod, ns, label_selector=self._selector())
            out.extend(self._info(p) for p in data.get("items") or [] if self._ours(p))
        return out

    # -- writing -----------------------------------------------------------------------
    async def create(self, launch: LaunchSpec) -> InstanceInfo:
        opts = self.pool_options(launch.options)
        ns = self._namespace(opts)
        boot_timeout = opts.boot_timeout or self.settings.boot_timeout
        body = build_pod(launch, opts, namespace=ns, controller_id=self.controller_id, boot_timeout=boot_timeout)
        try:
            pod = await self._json(self._core.create_namespaced_pod, ns, body)
        except _Conflict:
            try:
                pod = await self._json(self._core.read_namespaced_pod, launch.name, ns)
            except _NotFound as exc:  # deleted between the two calls
                raise ProviderTemporaryError(f"pod {ns}/{launch.name} vanished while adopting it") from exc
            if not self._ours(pod):
                raise ProviderPermanentError(
                    f"pod {ns}/{launch.name} exists and is not managed by controller {self.controller_id}"
                ) from None
        if launch.files:
            try:
                await self._ensure_secret(launch, pod)
            except ProviderPermanentError:
                with contextlib.suppress(Exception):
                    await self.delete(launch.name)
                raise
        return self._info(pod)

    async def _ensure_secret(self, launch: LaunchSpec, pod: Mapping[str, Any]) -> None:
        ns = pod["metadata"]["namespace"]
        body = build_secret(launch, pod, self.controller_id)
        try:
            await self._json(self._core.create_namespaced_secret, ns, body)
            return
        except _Conflict:
            pass
        # A Secret of that name exists: ours already (adoption), or left over from an
        # earlier Pod of the same name that the garbage collector has not removed yet.
        try:
            current = await self._json(self._core.read_namespaced_secret, secret_name(launch.name), ns)
        except _NotFound as exc:
            raise ProviderTemporaryError(f"secret {ns}/{secret_name(launch.name)} is being replaced") from exc
        refs = (current.get("metadata") or {}).get("ownerReferences") or []
        if any(r.get("uid") == pod["metadata"]["uid"] for r in refs):
            return
        owner = (current.get("metadata") or {}).get("labels", {}).get(LABEL_CONTROLLER)
        if owner != self.controller_id:
            raise ProviderPermanentError(f"secret {ns}/{secret_name(launch.name)} exists and is not ours")
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            await self._json(self._core.replace_namespaced_secret, secret_name(launch.name), ns, body)
        except _Conflict as exc:
            raise ProviderTemporaryError(f"secret {ns}/{secret_name(launch.name)} changed meanwhile") from exc

    async def delete(self, name: str) -> None:
        namespaces = [self._where[name]] if name in self._where else list(self.settings.namespaces)
        for ns in namespaces:
            try:
                await self._json(self._core.delete_namespaced_pod, name, ns, body={"propagationPolicy": "Background"})
            except _NotFound:
                continue
        self._where.pop(name, None)

    # -- watching ----------------------------------------------------------------------
    def _offer(self, info: InstanceInfo) -> None:
        key = (info.status, info.exit_code, info.reason)
        if self._last_seen.get(info.name) == key:
            return  # unchanged (a re-list, or a change we do not report)
        self._last_seen[info.name] = key
        for q in self._subscribers:
            while True:
                try:
                    q.put_nowait(info)
                    break
                except asyncio.QueueFull:
                    with contextlib.suppress(asyncio.QueueEmpty):
                        q.get_nowait()  # the oldest goes; list() remains the truth
                        self.dropped_watch_events += 1

    def _ensure_watching(self) -> None:
        if self._watchers or self._closed or not self.settings.watch:
            return
        self._watchers = [
            asyncio.create_task(self._watch_namespace(ns), name=f"k8s-watch-{self.name}-{ns}")
            for ns in self.settings.namespaces
        ]

    async def watch(self) -> AsyncIterator[InstanceInfo]:
        q: asyncio.Queue[InstanceInfo | None] = asyncio.Queue(maxsize=self.settings.watch_queue_size)
        self._subscribers.add(q)
        self._ensure_watching()
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item
        finally:
            self._subscribers.discard(q)

    async def _watch_namespace(self, ns: str) -> None:
        """List, then watch from the list's resourceVersion; re-list on 410 Gone;
        reconnect with exponential back-off (and jitter) on errors."""
        s = self.settings
        backoff = s.watch_backoff_initial
        rv: str | None = None
        while not self._closed:
            try:
                if rv is None:
                    data = await self._json(self._core.list_namespaced_pod, ns, label_selector=self._selector())
                    rv = str((data.get("metadata") or {}).get("resourceVersion") or "")
                    listed = set()
                    for pod in data.get("items") or []:
                        if self._ours(pod):
                            info = self._info(pod)
                            listed.add(info.name)
                            self._offer(info)
                    for name in [n for n in self._last_seen if n not in listed and self._where.get(n, ns) == ns]:
                        self._last_seen.pop(name, None)  # deleted while we were not watching
                got_any = False
                async for event in self._stream(ns, rv):
                    etype = event.get("type")
                    obj = event.get("object") or {}
                    if etype == "ERROR":
                        if obj.get("code") == 410:
                            self.watch_relists += 1
                            rv = None  # compacted: start again from a fresh list
                            break
                        raise ProviderTemporaryError(f"watch error: {obj.get('message')}")
                    new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                    if new_rv:
                        rv = str(new_rv)
                    got_any = True
                    if etype in ("ADDED", "MODIFIED") and self._ours(obj):
                        self._offer(self._info(obj))
                    elif etype == "DELETED":
                        gone = str((obj.get("metadata") or {}).get("name"))
                        self._where.pop(gone, None)
                        self._last_seen.pop(gone, None)
                if rv is None:  # 410: re-list at once
                    continue
                # The stream ended (server timeout or dropped connection): reconnect
                # from the last resourceVersion; at once if it was delivering events.
                self.watch_restarts += 1
                if got_any:
                    backoff = s.watch_backoff_initial
                    continue
                await asyncio.sleep(min(backoff, s.watch_backoff_max) * random.uniform(0.5, 1.0))  # noqa: S311
                backoff = min(backoff * 2, s.watch_backoff_max)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.watch_restarts += 1
                await asyncio.sleep(min(backoff, s.watch_backoff_max) * random.uniform(0.5, 1.0))  # noqa: S311
                backoff = min(backoff * 2, s.watch_backoff_max)

    async def _stream(self, ns: str, rv: str) -> AsyncIterator[dict[str, Any]]:
        """One watch request; events are read by a dedicated thread (a watch is
        long-lived, so it does not take a slot of the call bound)."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[dict[str, Any] | BaseException | None] = asyncio.Queue()
        holder: dict[str, Any] = {}
        stop = threading.Event()

        def put(item: dict[str, Any] | BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(q.put_nowait, item)

        def reader() -> None:
            try:
                resp = self._core.list_namespaced_pod(
                    ns,
                    label_selector=self._selector(),
                    watch=True,
                    allow_watch_bookmarks=True,
                    resource_version=rv,
                    timeout_seconds=self.settings.watch_timeout,
                    _preload_content=False,
                    _request_timeout=(self.settings.request_timeout, self.settings.watch_timeout + 30),
                )
                holder["resp"] = resp
                if stop.is_set():
                    resp.close()
                    return
                buf = b""
                for chunk in resp.stream(4096, decode_content=False):
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            put(json.loads(line))
                    if stop.is_set():
                        break
                put(None)
            except BaseException as exc:
                put(None if stop.is_set() else exc)
            finally:
                resp_ = holder.get("resp")
                if resp_ is not None:
                    with contextlib.suppress(Exception):
                        resp_.release_conn()

        thread = threading.Thread(target=reader, name=f"k8s-watch-{ns}", daemon=True)
        thread.start()
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise _map_error(item) if isinstance(item, Exception) else item
                yield item
        finally:
            stop.set()
            resp = holder.get("resp")
            if resp is not None:
                with contextlib.suppress(Exception):
                    resp.shutdown() if hasattr(resp, "shutdown") else resp.close()

    # -- check -------------------------------------------------------------------------
    async def check(self, pools: Mapping[str, Mapping[str, Any]]) -> builtins.list[Finding]:
        subject = f"provider {self.name}"
        findings: list[Finding] = []
        namespaces = set(self.settings.namespaces)
        for pool, options in pools.items():
            try:
                opts = self.pool_options(options)
                namespaces.add(self._namespace(opts))
            except ProviderPermanentError as exc:
                findings.append(Finding("error", f"{subject} pool {pool}", str(exc)))
        from kubernetes import client

        authz = client.AuthorizationV1Api(self.api_client)
        missing: list[str] = []
        try:
            for ns in sorted(namespaces):
                for group, resource, verbs in REQUIRED_PERMISSIONS:
                    for verb in verbs:
                        body = {
                            "apiVersion": "authorization.k8s.io/v1",
                            "kind": "SelfSubjectAccessReview",
                            "spec": {
                                "resourceAttributes": {
                                    "namespace": ns,
                                    "verb": verb,
                                    "group": group,
                                    "resource": resource,
                                }
                            },
                        }
                        review = await self._json(authz.create_self_subject_access_review, body)
                        if not (review.get("status") or {}).get("allowed"):
                            missing.append(f"{verb} {resource}{'.' + group if group else ''} in namespace {ns}")
        except (ProviderTemporaryError, ProviderPermanentError) as exc:
            findings.append(Finding("error", subject, f"cannot reach the Kubernetes API: {exc}"))
            return findings
        if missing:
            findings.append(Finding("error", subject, "missing RBAC permissions: " + "; ".join(missing)))
        else:
            findings.append(
                Finding("ok", subject, f"API reachable; RBAC allows everything needed in {sorted(namespaces)}")
            )
        return findings

    async def close(self) -> None:
        self._closed = True
        for task in self._watchers:
            task.cancel()
        for task in self._watchers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._watchers = []
        for q in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        if self._own_client and self._api_client is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._api_client.close)
            self._api_client = None


class _NotFound(ProviderPermanentError):
    pass


class _Conflict(ProviderTemporaryError):
    pass


def _map_error(exc: BaseException) -> Exception:
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ProviderTemporaryError | ProviderPermanentError):
        return exc
    if isinstance(exc, ApiException):
        status = int(exc.status or 0)
        message = f"Kubernetes API {status}: {_message(exc)}"
        if status == 404:
            return _NotFound(message)
        if status == 409:
            return _Conflict(message)
        if status in (400, 403, 405, 422):
            return ProviderPermanentError(message)
        retry_after: float | None = None
        with contextlib.suppress(Exception):
            retry_after = float((exc.headers or {})["Retry-After"])
        return ProviderTemporaryError(message, retry_after=retry_after)
    return ProviderTemporaryError(f"Kubernetes API unreachable: {type(exc).__name__}: {exc}")


def _message(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message") or exc.reason)
    except Exception:
        return str(exc.reason)
