"""Leader election on a ``coordination.k8s.io/v1`` Lease, the way client-go does it.

https://kubernetes.io/docs/concepts/architecture/leases/ ·
client-go ``tools/leaderelection``.

* Every ``retry_period`` a candidate reads the Lease. It takes it when the Lease
  does not exist, has no holder, or its record has not changed for
  ``lease_duration`` *as observed on the local clock* (the remote
  ``renewTime`` is not trusted across clock skew). Writes carry the Lease's
  ``resourceVersion``, so of two candidates racing, one gets ``409`` and loses.
* The leader renews every ``retry_period``. When no renewal has succeeded for
  ``renew_deadline`` (< ``lease_duration``), or the Lease shows another holder,
  it stops acting at once: ``is_leader`` turns false before
  ``on_stopped_leading`` runs, and the task started for ``on_started_leading``
  is cancelled.
* On cancellation a leader gives the Lease up (empty ``holderIdentity``) so a
  successor does not wait out the lease duration.
* The leader writes the URL followers reach it at (``advertise_url``) into the
  Lease's ``runner-scaler.io/leader-url`` annotation; :meth:`LeaseElector.leader`
  is what a follower last observed, for forwarding webhooks and API reads
  (``scaler/web/forward.py``).

The Kubernetes client is blocking; its calls run in threads, each bounded by
the time left before the renew deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scaler.config import LeaderElection

log = logging.getLogger(__name__)

# The RBAC leader election needs, in the Lease's namespace.
LEADER_ELECTION_PERMISSIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("coordination.k8s.io", "leases", ("create", "get", "update")),
)

Callback = Callable[[], Awaitable[None]]

LEADER_URL_ANNOTATION = "runner-scaler.io/leader-url"


def _micro_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Conflict(Exception):
    pass


class _NotFound(Exception):
    pass


class AlwaysLeader:
    """Leader election switched off: this replica always leads."""

    def __init__(self, identity: str | None = None) -> None:
        self.identity = identity or socket.gethostname()
        self.is_leader = False

    async def run(self, on_started_leading: Callback, on_stopped_leading: Callback) -> None:
        self.is_leader = True
        try:
            await on_started_leading()
            await asyncio.Event().wait()
        finally:
            self.is_leader = False
            with contextlib.suppress(Exception):
                await asyncio.shield(on_stopped_leading())


class LeaseElector:
    def __init__(
        self,
        config: LeaderElection,
        api_client: Any,
        *,
        clock: Callable[[], float] = time.time,
        release_on_cancel: bool = True,
        advertise_url: str | None = None,
    ) -> None:
        if not config.renew_deadline < config.lease_duration:
            raise ValueError("leader_election.renew_deadline must be shorter than lease_duration")
        if not config.retry_period < config.renew_deadline:
            raise ValueError("leader_election.retry_period must be shorter than renew_deadline")
        self.config = config
        self.identity = config.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self._api_client = api_client
        self._clock = clock
        self.release_on_cancel = release_on_cancel
        self.advertise_url = advertise_url
        self.is_leader = False
        self.transitions = 0  # times this replica became leader
        # The Lease as last read, and when (local clock) its record last changed.
        self._observed: dict[str, Any] | None = None
        self._observed_record: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0

    # -- the client ------------------------------------------------------------------
    @staticmethod
    def api_client_from(
        *,
        in_cluster: bool | None = None,
        kubeconfig: str | Path | None = None,
        context: str | None = None,
        api_url: str | None = None,
    ) -> Any:
        """An ApiClient from in-cluster config, a kubeconfig file and/or context.

        ``in_cluster=None``: in-cluster when ``KUBERNETES_SERVICE_HOST`` is set and
        no kubeconfig / context was named. ``api_url`` alone targets that server
        without credentials (a fake API server, ``kubectl proxy``)."""
        import os

        from kubernetes import client, config

        cfg = client.Configuration()
        if api_url is not None and in_cluster is None and kubeconfig is None and context is None:
            cfg.host = api_url
            return client.ApiClient(cfg)
        if in_cluster is None:
            in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and kubeconfig is None and context is None
        if in_cluster:
            config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, context=context, client_configuration=cfg
            )
        if api_url is not None:
            cfg.host = api_url
        return client.ApiClient(cfg)

    def _api(self) -> Any:
        from kubernetes import client

        return client.CoordinationV1Api(self._api_client)

    def _blocking(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        kwargs.setdefault("_request_timeout", max(self.config.retry_period, 0.5))
        try:
            resp = getattr(self._api(), method)(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise _NotFound() from exc
            if exc.status == 409:
                raise _Conflict() from exc
            raise
        try:
            data: dict[str, Any] = json.loads(resp.data or b"{}")
            return data
        finally:
            resp.release_conn()

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self._blocking, method, *args, **kwargs)

    # -- one attempt -----------------------------------------------------------------
    def _spec(self, now: float, *, acquire: bool, transitions: int) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.config.lease_duration)),
            "renewTime": _micro_time(now),
            "leaseTransitions": transitions,
        }
        prev = (self._observed or {}).get("spec") or {}
        spec["acquireTime"] = _micro_time(now) if acquire else prev.get("acquireTime") or _micro_time(now)
        return spec

    def _advertise(self, lease: dict[str, Any]) -> dict[str, Any]:
        meta = lease.setdefault("metadata", {})
        annotations = dict(meta.get("annotations") or {})
        if self.advertise_url:
            annotations[LEADER_URL_ANNOTATION] = self.advertise_url
        else:
            annotations.pop(LEADER_URL_ANNOTATION, None)
        meta["annotations"] = annotations
        return lease

    def leader(self) -> tuple[str | None, str | None]:
        """(holder, its advertised URL) as last observed; (None, None) while
        the Lease is free or its holder's record has expired."""
        lease = self._observed
        if not lease:
            return None, None
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or None
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        if holder is None or self._observed_at + duration <= self._clock():
            return None, None
        annotations = (lease.get("metadata") or {}).get("annotations") or {}
        url = annotations.get(LEADER_URL_ANNOTATION)
        return holder, url if isinstance(url, str) and url else None

    def _observe(self, lease: dict[str, Any], now: float) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed_record:
            self._observed_record = record
            self._observed_at = now
        self._observed = lease

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        cfg = self.config
        now = self._clock()
        try:
            lease = await self._call("read_namespaced_lease", cfg.lease_name, cfg.namespace)
        except _NotFound:
            body = self._advertise(
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": cfg.lease_name, "namespace": cfg.namespace},
                    "spec": self._spec(now, acquire=True, transitions=0),
                }
            )
            try:
                created = await self._call("create_namespaced_lease", cfg.namespace, body)
            except _Conflict:
                return False
            self._observe(created, now)
            return True
        self._observe(lease, now)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        ours = holder == self.identity
        if holder and not ours and self._observed_at + duration > now:
            return False  # held by someone else, and not expired as we observe it
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        lease["spec"] = self._spec(now, acquire=not ours, transitions=transitions)
        self._advertise(lease)
        try:
            updated = await self._call("replace_namespaced_lease", cfg.lease_name, cfg.namespace, lease)
        except _Conflict:
            return False
        self._observe(updated, now)
        return True

    async def release(self) -> None:
        """Give the Lease up if we hold it (best effort)."""
        cfg = self.config
        with contextlib.suppress(Exception):
            lease = await self._call("read_namespaced_lease", cfg.lease_name, cfg.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=_micro_time(self._clock()))
            ((lease.get("metadata") or {}).get("annotations") or {}).pop(LEADER_URL_ANNOTATION, None)
            await self._call("replace_namespaced_lease", cfg.lease_name, cfg.namespace, lease)

    # -- the loop ----------------------------------------------------------------------
    async def run(self, on_started_leading: Callback, on_stopped_leading: Callback) -> None:
        """Campaign, lead, lose, campaign again … forever (until cancelled)."""
        try:
            while True:
                await self._acquire()
                await self._lead(on_started_leading, on_stopped_leading)
        finally:
            if self.release_on_cancel:
                await asyncio.shield(self.release())

    async def _acquire(self) -> None:
        while True:
            try:
                started = self._clock()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout(self.config.renew_deadline):
                    acquired = await self.try_acquire_or_renew()
                if acquired:
                    self._last_renew = started
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leader election: cannot read or write lease: %s", exc)
            await asyncio.sleep(self.config.retry_period)

    async def _lead(self, on_started_leading: Callback, on_stopped_leading: Callback) -> None:
        self.is_leader = True
        self.transitions += 1
        log.info("leader election: %s became leader of %s", self.identity, self.config.lease_name)
        task = asyncio.ensure_future(on_started_leading())
        failed = False
        try:
            while True:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.error("leader election: on_started_leading failed; stepping down", exc_info=task.exception())
                    failed = True
                    break
                deadline = self._last_renew + self.config.renew_deadline
                await asyncio.sleep(max(0.0, min(self.config.retry_period, deadline - self._clock())))
                started = self._clock()
                remaining = deadline - started
                if remaining <= 0:
                    log.warning("leader election: no renewal within %ss; stepping down", self.config.renew_deadline)
                    break
                ok = False
                try:
                    async with asyncio.timeout(remaining):
                        ok = await self.try_acquire_or_renew()
                except TimeoutError:
                    log.warning("leader election: renewal timed out")
                except Exception as exc:
                    log.warning("leader election: renewal failed: %s", exc)
                if ok:
                    self._last_renew = started
                    continue
                holder = ((self._observed or {}).get("spec") or {}).get("holderIdentity")
                if holder and holder != self.identity:
                    log.warning("leader election: lease taken over by %s", holder)
                    break
        finally:
            self.is_leader = False  # stop acting before anything else
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await asyncio.shield(on_stopped_leading())
        if failed:  # let another replica try, and do not spin
            await self.release()
            await asyncio.sleep(self.config.lease_duration)
