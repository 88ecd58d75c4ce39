"""A small, stateful fake Kubernetes API server (Starlette, run by uvicorn on 127.0.0.1).

It serves the subset of the API that runner-scaler's Kubernetes provider and
leader election use, with the semantics that matter for correctness, so tests
can drive it with the real ``kubernetes`` Python client::

    with FakeKube() as kube:                # random port on 127.0.0.1
        api = kube.api_client()             # kubernetes.client.ApiClient
        ...
        kube.set_pod_phase("default", "runner-1", "Succeeded", exit_code=0)

What it models (each with the API concept it mirrors):

* **Objects and resourceVersion** — one global, monotonically increasing
  ``resourceVersion`` stamped on every write; ``uid``, ``creationTimestamp``,
  ``generateName`` (a random 5-character suffix).
  https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions
* **Optimistic concurrency** — ``PUT`` (and ``DELETE`` preconditions) carrying a
  stale ``metadata.resourceVersion`` get ``409 Conflict``; ``POST`` of an existing
  name gets ``409 AlreadyExists``.
  https://kubernetes.io/docs/reference/using-api/api-concepts/#conflicts
* **Label selectors** on list and watch (``=``, ``==``, ``!=``, ``in``, ``notin``,
  exists, ``!``key). https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors
* **Watch** streams (``?watch=true``): ADDED/MODIFIED/DELETED from a
  ``resourceVersion``, ``BOOKMARK`` events when ``allowWatchBookmarks=true``,
  ``timeoutSeconds``, and an ``ERROR`` event with ``410 Gone`` when the
  requested version has been compacted away (see :meth:`FakeKube.compact`).
  https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes
  and #watch-bookmarks
* **Garbage collection** of dependents through ``ownerReferences``: an object
  whose owners (by uid) no longer exist is deleted (background propagation),
  also when it is created pointing at an owner that is already gone.
  https://kubernetes.io/docs/concepts/architecture/garbage-collection/
* **Leases** (``coordination.k8s.io/v1``) as plain objects with
  ``holderIdentity`` / ``renewTime`` — the semantics leader election relies on are
  the optimistic concurrency above.
  https://kubernetes.io/docs/concepts/architecture/leases/
* **SelfSubjectAccessReview** (``authorization.k8s.io/v1``) answered from a
  configurable set of allowed ``(group, resource, verb)``; requests that the set
  does not allow are refused with ``403 Forbidden`` (a crude RBAC).
  https://kubernetes.io/docs/reference/access-authn-authz/authorization/#checking-api-access
* **A kubelet** (optional, ``kubelet=True``): schedules pending Pods onto node
  ``fake-node``, keeps a Pod in ``ContainerCreating`` while a Secret it mounts
  is missing, runs it, and completes a Pod whose first container's command is
  ``sleep N`` (or ``sh -c "… sleep N …"``) with exit code 0 after N seconds.
  Test hooks move a Pod through any phase / container state by hand
  (:meth:`FakeKube.set_pod_phase`, :meth:`FakeKube.set_waiting`,
  :meth:`FakeKube.set_unschedulable`, :meth:`FakeKube.evict`).
  https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/
* **Test hooks over HTTP** for a server started with ``python -m
  scaler.testing.fake_kube [--port N] [--kubelet]``:
  ``POST /fake/v1/namespaces/{ns}/pods/{name}/{phase|waiting|unschedulable|evict}``.
* **Faults**: :meth:`FakeKube.drop_watches` ends every open watch stream (as a
  dropped connection or an apiserver restart would), :attr:`FakeKube.fail_requests`
  answers every request with ``503`` while set.

What it does **not** model: authentication, admission and validation (objects
are stored as sent, apart from ``metadata``), defaulting, field selectors,
server-side apply and JSON patch (``PATCH`` is a JSON merge patch), graceful Pod
deletion (a deleted Pod disappears at once), finalizers, ``foreground``
propagation (treated as background), pagination (``limit``/``continue`` are
ignored), watch events for objects that stop matching a selector, status
subresources (``PUT …/status`` is not served), namespaces as objects (any
namespace exists), and every resource other than Pods, Secrets, Leases and
SelfSubjectAccessReviews.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import copy
import json
import re
import secrets
import shlex
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from scaler.testing.threaded import ThreadedServer

__all__ = ["FakeKube", "LabelSelector"]


@dataclass(frozen=True)
class _Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


PODS = _Kind("", "v1", "pods", "Pod")
SECRETS = _Kind("", "v1", "secrets", "Secret")
LEASES = _Kind("coordination.k8s.io", "v1", "leases", "Lease")
_KINDS = {(k.group, k.plural): k for k in (PODS, SECRETS, LEASES)}

_SLEEP = re.compile(r"(?:^|[\s;&|])sleep\s+(\d+(?:\.\d+)?)")


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


class LabelSelector:
    """A parsed label selector (the string form used in ``?labelSelector=``)."""

    def __init__(self, text: str | None) -> None:
        self.reqs: list[tuple[str, str, frozenset[str]]] = []
        for part in self._split(text or ""):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)", part)
            if m:
                values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
                self.reqs.append((m.group(1), m.group(2), values))
            elif "!=" in part:
                k, v = part.split("!=", 1)
                self.reqs.append((k.strip(), "notin", frozenset([v.strip()])))
            elif "==" in part or "=" in part:
                k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
                self.reqs.append((k.strip(), "in", frozenset([v.strip()])))
            elif part.startswith("!"):
                self.reqs.append((part[1:].strip(), "!", frozenset()))
            else:
                self.reqs.append((part, "exists", frozenset()))

    @staticmethod
    def _split(text: str) -> Iterator[str]:
        depth, cur = 0, ""
        for ch in text:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            if ch == "," and depth == 0:
                yield cur
                cur = ""
            else:
                cur += ch
        yield cur

    def matches(self, labels: dict[str, str]) -> bool:
        for key, op, values in self.reqs:
            present = key in labels
            if op == "in" and (not present or labels[key] not in values):
                return False
            if op == "notin" and present and labels[key] in values:
                return False
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
        return True


class FakeKube:
    """The fake API server's state, its Starlette app, and the uvicorn thread running it."""

    def __init__(
        self,
        *,
        kubelet: bool = False,
        kubelet_interval: float = 0.05,
        bookmark_interval: float = 1.0,
        max_events: int = 10_000,
        allowed: Iterable[tuple[str, str, str]] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # (group, plural, ns, name)
        self._rv = 0
        self._events: deque[tuple[int, str, _Kind, dict[str, Any]]] = deque()
        self._compacted_rv = 0  # watches from a version below this get 410
        self.max_events = max_events
        self.bookmark_interval = bookmark_interval
        self.kubelet = kubelet
        self.kubelet_interval = kubelet_interval
        # None: everything allowed; else the set of (apiGroup, resource, verb) allowed.
        self.allowed: set[tuple[str, str, str]] | None = set(allowed) if allowed is not None else None
        self.fail_requests = False
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.creations: dict[tuple[str, str, str], int] = {}  # (plural, ns, name) -> times created
        self._watch_epoch = 0
        self._run_until: dict[str, float] = {}  # pod uid -> monotonic time its sleep ends
        self._closing = False
        self.app = self._build_app()
        self._threaded: ThreadedServer | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> FakeKube:
        self._threaded = ThreadedServer(self.app, "fake kube API server", lifespan="on", timeout_graceful_shutdown=1)
        self.port = self._threaded.start(port)
        return self

    def stop(self) -> None:
        self._closing = True
        if self._threaded is not None:
            self._threaded.stop()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def api_client(self) -> Any:
        """A real ``kubernetes.client.ApiClient`` pointed at this server."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        cfg.connection_pool_maxsize = 32
        return client.ApiClient(cfg)

    # -- store -------------------------------------------------------------------------
    def _bump(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _record(self, etype: str, kind: _Kind, obj: dict[str, Any]) -> None:
        self._events.append((int(obj["metadata"]["resourceVersion"]), etype, kind, copy.deepcopy(obj)))
        while len(self._events) > self.max_events:
            rv, *_ = self._events.popleft()
            self._compacted_rv = rv

    def compact(self) -> None:
        """Forget the event history: watches from any older version get ``410 Gone``."""
        with self._lock:
            self._events.clear()
            self._compacted_rv = self._rv + 1  # nothing before "now" can be replayed
            # A watch from exactly the current version is still fine in the real
            # server; we are stricter so that tests can force a 410 deterministically.

    def drop_watches(self) -> None:
        """End every open watch stream (a dropped connection)."""
        with self._lock:
            self._watch_epoch += 1

    def get(self, kind: _Kind | str, namespace: str, name: str) -> dict[str, Any] | None:
        k = self._kind(kind)
        with self._lock:
            obj = self._objects.get((k.group, k.plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind: _Kind | str, namespace: str | None = None) -> builtins.list[dict[str, Any]]:
        k = self._kind(kind)
        with self._lock:
            return [
                copy.deepcopy(o)
                for (g, p, ns, _), o in sorted(self._objects.items())
                if (g, p) == (k.group, k.plural) and (namespace is None or ns == namespace)
            ]

    @staticmethod
    def _kind(kind: _Kind | str) -> _Kind:
        if isinstance(kind, _Kind):
            return kind
        for k in _KINDS.values():
            if kind in (k.plural, k.kind):
                return k
        raise KeyError(kind)

    def create(self, kind: _Kind | str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        k = self._kind(kind)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        with self._lock:
            name = meta.get("name")
            if not name:
                prefix = meta.get("generateName")
                if not prefix:
                    raise ApiError(422, "Invalid", "name or generateName is required")
                alphabet = "bcdfghjklmnpqrstvwxz2456789"
                for _ in range(100):
                    name = prefix + "".join(secrets.choice(alphabet) for _ in range(5))
                    if (k.group, k.plural, namespace, name) not in self._objects:
                        break
                meta["name"] = name
            key = (k.group, k.plural, namespace, name)
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{k.plural} "{name}" already exists')
            meta.update(
                namespace=namespace,
                uid=str(uuid.uuid4()),
                creationTimestamp=_now_iso(),
                resourceVersion=self._bump(),
            )
            meta.pop("deletionTimestamp", None)
            obj["kind"], obj["apiVersion"] = k.kind, k.api_version
            if k is PODS:
                obj.setdefault("status", {"phase": "Pending"})
                obj["status"].setdefault("phase", "Pending")
            self._objects[key] = obj
            self.creations[(k.plural, namespace, name)] = self.creations.get((k.plural, namespace, name), 0) + 1
            self._record("ADDED", k, obj)
            self._gc()
            return copy.deepcopy(self._objects.get(key, obj))

    def replace(self, kind: _Kind | str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        k = self._kind(kind)
        with self._lock:
            key = (k.group, k.plural, namespace, name)
            cur = self._objects.get(key)
            if cur is None:
                raise ApiError(404, "NotFound", f'{k.plural} "{name}" not found')
            want = (body.get("metadata") or {}).get("resourceVersion")
            if want and want != cur["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {k.plural} "{name}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            for field in ("name", "namespace", "uid", "creationTimestamp"):
                meta[field] = cur["metadata"][field]
            meta["resourceVersion"] = self._bump()
            obj["kind"], obj["apiVersion"] = k.kind, k.api_version
            if k is PODS and "status" not in obj:
                obj["status"] = cur.get("status", {})
            self._objects[key] = obj
            self._record("MODIFIED", k, obj)
            self._gc()
            return copy.deepcopy(obj)

    def patch(self, kind: _Kind | str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            cur = self.get(kind, namespace, name)
            if cur is None:
                raise ApiError(404, "NotFound", f'"{name}" not found')
            merged = _merge_patch(cur, patch)
            if not (patch.get("metadata") or {}).get("resourceVersion"):
                merged["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            return self.replace(kind, namespace, name, merged)

    def delete(
        self, kind: _Kind | str, namespace: str, name: str, *, precondition_rv: str | None = None
    ) -> dict[str, Any]:
        k = self._kind(kind)
        with self._lock:
            key = (k.group, k.plural, namespace, name)
            cur = self._objects.get(key)
            if cur is None:
                raise ApiError(404, "NotFound", f'{k.plural} "{name}" not found')
            if precondition_rv and precondition_rv != cur["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "Precondition failed: ResourceVersion mismatch")
            del self._objects[key]
            cur["metadata"]["resourceVersion"] = self._bump()
            cur["metadata"]["deletionTimestamp"] = _now_iso()
            self._record("DELETED", k, cur)
            self._run_until.pop(cur["metadata"]["uid"], None)
            self._gc()
            return copy.deepcopy(cur)

    def _gc(self) -> None:
        """Delete dependents whose owners are all gone (background propagation)."""
        while True:
            uids = {o["metadata"]["uid"] for o in self._objects.values()}
            orphans = [
                key
                for key, o in self._objects.items()
                if (refs := o["metadata"].get("ownerReferences")) and not any(r.get("uid") in uids for r in refs)
            ]
            if not orphans:
                return
            for key in orphans:
                obj = self._objects.pop(key)
                obj["metadata"]["resourceVersion"] = self._bump()
                obj["metadata"]["deletionTimestamp"] = _now_iso()
                self._record("DELETED", _KINDS[(key[0], key[1])], obj)

    # -- kubelet and test hooks ----------------------------------------------------------
    def _update_pod(self, namespace: str, name: str, mutate: Any) -> dict[str, Any]:
        with self._lock:
            pod = self.get(PODS, namespace, name)
            if pod is None:
                raise KeyError(f"pod {namespace}/{name} not found")
            mutate(pod)
            pod["metadata"].pop("resourceVersion", None)
            return self.replace(PODS, namespace, name, pod)

    @staticmethod
    def _container_names(pod: dict[str, Any]) -> builtins.list[str]:
        return [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]

    def set_pod_phase(
        self,
        namespace: str,
        name: str,
        phase: str,
        *,
        exit_code: int | None = None,
        reason: str | None = None,
        message: str | None = None,
        container_reason: str | None = None,
        node: str = "fake-node",
    ) -> dict[str, Any]:
        """Move a Pod to ``phase`` as a kubelet would (``Running``, ``Succeeded``,
        ``Failed``, ``Unknown``); container states follow the phase."""

        def mutate(pod: dict[str, Any]) -> None:
            pod.setdefault("spec", {})["nodeName"] = pod["spec"].get("nodeName") or node
            st: dict[str, Any] = {"phase": phase}
            if reason:
                st["reason"] = reason
            if message:
                st["message"] = message
            now = _now_iso()
            states: list[dict[str, Any]] = []
            for cname in self._container_names(pod):
                if phase == "Running":
                    state: dict[str, Any] = {"running": {"startedAt": now}}
                elif phase in ("Succeeded", "Failed"):
                    code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
                    term: dict[str, Any] = {"exitCode": code, "finishedAt": now}
                    term["reason"] = container_reason or ("Completed" if code == 0 else "Error")
                    state = {"terminated": term}
                else:
                    state = {"waiting": {"reason": "ContainerCreating"}}
                states.append({"name": cname, "ready": phase == "Running", "state": state})
            if phase == "Failed" and exit_code is None and reason:
                states = []  # e.g. evicted before any container status was reported
            if states:
                st["containerStatuses"] = states
            pod["status"] = st

        return self._update_pod(namespace, name, mutate)

    def set_waiting(self, namespace: str, name: str, reason: str, message: str = "") -> dict[str, Any]:
        """Keep the Pod Pending with its containers waiting for ``reason``
        (``ImagePullBackOff``, ``ErrImagePull``, ``CreateContainerConfigError`` …)."""

        def mutate(pod: dict[str, Any]) -> None:
            pod.setdefault("spec", {})["nodeName"] = "fake-node"
            pod["status"] = {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [
                    {"name": c, "ready": False, "state": {"waiting": {"reason": reason, "message": message}}}
                    for c in self._container_names(pod)
                ],
            }

        return self._update_pod(namespace, name, mutate)

    def set_unschedulable(self, namespace: str, name: str, message: str = "0/1 nodes are available") -> dict[str, Any]:
        def mutate(pod: dict[str, Any]) -> None:
            pod["status"] = {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
                ],
            }

        return self._update_pod(namespace, name, mutate)

    def evict(self, namespace: str, name: str, *, node_lost: bool = False) -> dict[str, Any]:
        """The kubelet evicts the Pod (or the node controller gives up on its node)."""
        if node_lost:

            def mutate(pod: dict[str, Any]) -> None:
                st = pod.setdefault("status", {})
                st["conditions"] = [
                    *(st.get("conditions") or []),
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByTaintManager",
                        "message": "Taint manager: deleting due to NoExecute taint",
                    },
                ]
                st["phase"] = "Unknown"
                st["reason"] = "NodeLost"

            return self._update_pod(namespace, name, mutate)
        return self.set_pod_phase(
            namespace, name, "Failed", reason="Evicted", message="The node was low on resource: memory."
        )

    def _kubelet_tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            for pod in self.list(PODS):
                meta, spec = pod["metadata"], pod.get("spec") or {}
                phase = (pod.get("status") or {}).get("phase", "Pending")
                ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
                if phase == "Pending" and not (pod.get("status") or {}).get("containerStatuses"):
                    if (pod.get("status") or {}).get("conditions"):
                        continue  # a test set it (e.g. unschedulable)
                    missing = [
                        v["secret"]["secretName"]
                        for v in spec.get("volumes") or []
                        if "secret" in v
                        and not v["secret"].get("optional")
                        and self.get(SECRETS, ns, v["secret"]["secretName"]) is None
                    ]
                    if missing:
                        continue  # ContainerCreating: FailedMount until the Secret exists
                    self.set_pod_phase(ns, name, "Running")
                    containers = spec.get("containers") or [{}]
                    seconds = _sleep_seconds(containers[0])
                    if seconds is not None:
                        self._run_until[uid] = now + seconds
                elif phase == "Running" and uid in self._run_until and now >= self._run_until[uid]:
                    del self._run_until[uid]
                    self.set_pod_phase(ns, name, "Succeeded", exit_code=0)

    async def _kubelet_loop(self) -> None:
        while not self._closing:
            if self.kubelet:
                self._kubelet_tick()
            await asyncio.sleep(self.kubelet_interval)

    # -- HTTP ------------------------------------------------------------------------------
    def _build_app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            task = asyncio.create_task(self._kubelet_loop())
            try:
                yield
            finally:
                self._closing = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        routes = [
            Route("/version", self._version, methods=["GET"]),
            Route("/fake/v1/namespaces/{ns}/pods/{name}/{action}", self._hook, methods=["POST"]),
            Route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", self._ssar, methods=["POST"]),
            Route("/api/v1/{plural}", self._collection, methods=["GET"]),
            Route("/api/v1/namespaces/{ns}/{plural}", self._collection, methods=["GET", "POST"]),
            Route(
                "/api/v1/namespaces/{ns}/{plural}/{name}",
                self._item,
                methods=["GET", "PUT", "PATCH", "DELETE"],
            ),
            Route("/apis/{group}/v1/{plural}", self._collection, methods=["GET"]),
            Route("/apis/{group}/v1/namespaces/{ns}/{plural}", self._collection, methods=["GET", "POST"]),
            Route(
                "/apis/{group}/v1/namespaces/{ns}/{plural}/{name}",
                self._item,
                methods=["GET", "PUT", "PATCH", "DELETE"],
            ),
        ]
        return Starlette(routes=routes, lifespan=lifespan)

    @staticmethod
    def _error(exc: ApiError) -> JSONResponse:
        return JSONResponse(_status(exc.code, exc.reason, exc.message), status_code=exc.code)

    def _gate(self, request: Request, group: str, plural: str, verb: str) -> None:
        self.requests.append((request.method, request.url.path))
        if self.fail_requests:
            raise ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        if (group, plural) not in _KINDS:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural})")
        if self.allowed is not None and (group, plural, verb) not in self.allowed:
            raise ApiError(403, "Forbidden", f'{plural} is forbidden: cannot {verb} resource "{plural}"')

    async def _hook(self, request: Request) -> Response:
        """Test hooks over HTTP (for a server run with ``python -m``):
        ``POST /fake/v1/namespaces/{ns}/pods/{name}/{phase|waiting|unschedulable|evict}``
        with the keyword arguments of the matching method as a JSON body."""
        p = request.path_params
        raw = await request.body()
        kwargs = json.loads(raw) if raw else {}
        hooks: dict[str, Callable[..., dict[str, Any]]] = {
            "phase": self.set_pod_phase,
            "waiting": self.set_waiting,
            "unschedulable": self.set_unschedulable,
            "evict": self.evict,
        }
        hook = hooks.get(p["action"])
        if hook is None:
            return self._error(ApiError(404, "NotFound", f"no hook {p['action']!r}; one of {sorted(hooks)}"))
        try:
            return JSONResponse(hook(p["ns"], p["name"], **kwargs))
        except KeyError as exc:
            return self._error(ApiError(404, "NotFound", str(exc)))
        except TypeError as exc:
            return self._error(ApiError(400, "BadRequest", str(exc)))

    async def _version(self, request: Request) -> Response:
        return JSONResponse({"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"})

    async def _ssar(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path))
        if self.fail_requests:
            return self._error(ApiError(503, "ServiceUnavailable", "unavailable"))
        body = await request.json()
        attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
        key = (attrs.get("group", ""), attrs.get("resource", ""), attrs.get("verb", ""))
        allowed = self.allowed is None or key in self.allowed
        body["status"] = {"allowed": allowed}
        if not allowed:
            body["status"]["reason"] = "no RBAC policy matched"
        body.update(kind="SelfSubjectAccessReview", apiVersion="authorization.k8s.io/v1")
        return JSONResponse(body, status_code=201)

    async def _collection(self, request: Request) -> Response:
        p = request.path_params
        group, plural, ns = p.get("group", ""), p["plural"], p.get("ns")
        q = request.query_params
        watching = q.get("watch") in ("true", "1")
        verb = {"POST": "create"}.get(request.method, "watch" if watching else "list")
        try:
            self._gate(request, group, plural, verb)
            kind = _KINDS[(group, plural)]
            if request.method == "POST":
                assert ns is not None
                return JSONResponse(self.create(kind, ns, await request.json()), status_code=201)
            selector = LabelSelector(q.get("labelSelector"))
            if watching:
                return self._watch(kind, ns, selector, q)
            with self._lock:
                items = [o for o in self.list(kind, ns) if selector.matches(o["metadata"].get("labels") or {})]
                for o in items:
                    o.pop("kind", None), o.pop("apiVersion", None)
                rv = str(self._rv)
            return JSONResponse(
                {
                    "kind": f"{kind.kind}List",
                    "apiVersion": kind.api_version,
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }
            )
        except ApiError as exc:
            return self._error(exc)

    def _watch(self, kind: _Kind, ns: str | None, selector: LabelSelector, q: Any) -> Response:
        start = q.get("resourceVersion") or ""
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(q.get("timeoutSeconds") or 1800)
        epoch = self._watch_epoch

        def matches(obj: dict[str, Any]) -> bool:
            meta = obj["metadata"]
            return (ns is None or meta.get("namespace") == ns) and selector.matches(meta.get("labels") or {})

        def line(etype: str, obj: dict[str, Any]) -> bytes:
            return json.dumps({"type": etype, "object": obj}).encode() + b"\n"

        async def stream() -> AsyncIterator[bytes]:
            with self._lock:
                if start in ("", "0"):
                    sent = self._rv
                    initial = [o for o in self.list(kind, ns) if matches(o)]
                    gone = False
                else:
                    sent = int(start)
                    initial = []
                    gone = sent < self._compacted_rv
            if gone:
                yield line(
                    "ERROR",
                    _status(410, "Expired", f"too old resource version: {start} ({self._compacted_rv})"),
                )
                return
            for o in initial:
                yield line("ADDED", o)
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while not self._closing and epoch == self._watch_epoch and time.monotonic() < deadline:
                with self._lock:
                    if sent + 1 < self._compacted_rv:
                        gone = True
                        pending = []
                    else:
                        pending = [(rv, t, o) for rv, t, k, o in self._events if rv > sent and k is kind]
                    current = self._rv
                if gone:
                    yield line("ERROR", _status(410, "Expired", "too old resource version"))
                    return
                for rv, etype, obj in pending:
                    sent = rv
                    if matches(obj):
                        yield line(etype, obj)
                if not pending:
                    sent = max(sent, current)
                if bookmarks and time.monotonic() - last_bookmark >= self.bookmark_interval:
                    last_bookmark = time.monotonic()
                    yield line(
                        "BOOKMARK",
                        {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": {"resourceVersion": str(sent)}},
                    )
                await asyncio.sleep(0.02)

        return StreamingResponse(stream(), media_type="application/json")

    async def _item(self, request: Request) -> Response:
        p = request.path_params
        group, plural, ns, name = p.get("group", ""), p["plural"], p["ns"], p["name"]
        verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[request.method]
        try:
            self._gate(request, group, plural, verb)
            kind = _KINDS[(group, plural)]
            if request.method == "GET":
                obj = self.get(kind, ns, name)
                if obj is None:
                    raise ApiError(404, "NotFound", f'{plural} "{name}" not found')
                return JSONResponse(obj)
            if request.method == "PUT":
                return JSONResponse(self.replace(kind, ns, name, await request.json()))
            if request.method == "PATCH":
                return JSONResponse(self.patch(kind, ns, name, await request.json()))
            raw = await request.body()
            opts = json.loads(raw) if raw else {}
            pre = (opts.get("preconditions") or {}).get("resourceVersion")
            return JSONResponse(self.delete(kind, ns, name, precondition_rv=pre))
        except ApiError as exc:
            return self._error(exc)


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


def _sleep_seconds(container: dict[str, Any]) -> float | None:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if len(argv) >= 2 and argv[0].rsplit("/", 1)[-1] == "sleep":
        with contextlib.suppress(ValueError):
            return float(argv[1])
    text = " ".join(shlex.quote(a) if " " not in a else a for a in argv)
    m = _SLEEP.search(text)
    return float(m.group(1)) if m else None


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """Decode a Secret's ``data`` (base64) for assertions in tests."""
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def main(argv: builtins.list[str] | None = None) -> None:
    """``python -m scaler.testing.fake_kube [--port N] [--kubelet]``: serve on 127.0.0.1."""
    import argparse

    parser = argparse.ArgumentParser(description="a fake Kubernetes API server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--kubelet", action="store_true", help="run Pods (and finish `sleep N` ones)")
    args = parser.parse_args(argv)
    fake = FakeKube(kubelet=args.kubelet)
    fake.start(port=args.port)
    print(f"fake Kubernetes API server at {fake.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
