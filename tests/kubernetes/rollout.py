"""The Deployment controller's rolling-update arithmetic, as a small model.

Read from Kubernetes' own controller (kubernetes/kubernetes,
``pkg/controller/deployment/rolling.go`` at 03e060242dcb, and
``NewRSNewReplicas`` in ``pkg/controller/deployment/util/deployment_util.go``):

* scale up the new ReplicaSet while all replicas < ``replicas + maxSurge``, never
  past ``replicas``;
* else scale old ReplicaSets down by at most
  ``maxScaledDown = allPods - (replicas - maxUnavailable) - newUnavailable``,
  unhealthy (not ready) old pods first (``cleanupUnhealthyReplicas``), then
  ready ones while ``available > minAvailable``
  (``scaleDownOldReplicaSetsForRollingUpdate``);
* a ReplicaSet removes not-ready pods before ready ones, and of ready pods the
  one ready for the shortest time (``controller.ActivePodsWithRanks``).

A rollout is complete when only new pods are left, ``replicas`` of them, all
ready. ``minReadySeconds`` is 0, so ready means available. Pods are whatever the
test makes them (real replicas on loopback, or stand-ins with a readiness rule).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Pod:
    name: str
    revision: int
    created: int  # creation order
    handle: Any = None  # what the test runs for this pod
    ready_since: int | None = None  # the step it became ready, None when not ready


@dataclass
class Deployment:
    replicas: int
    max_surge: int
    max_unavailable: int
    make: Callable[[str, int], Awaitable[Any]]  # (pod name, revision) -> handle
    delete: Callable[[Pod], Awaitable[None]]  # starts the pod's termination
    revision: int = 1
    pods: list[Pod] = field(default_factory=list)
    steps: int = 0
    _made: int = 0

    @property
    def new(self) -> list[Pod]:
        return [p for p in self.pods if p.revision == self.revision]

    @property
    def old(self) -> list[Pod]:
        return [p for p in self.pods if p.revision != self.revision]

    def observe(self, ready: Callable[[Pod], bool]) -> None:
        """The kubelet's probes: record which pods are ready now."""
        for p in self.pods:
            if not ready(p):
                p.ready_since = None
            elif p.ready_since is None:
                p.ready_since = self.steps

    def complete(self) -> bool:
        return not self.old and len(self.new) == self.replicas and all(p.ready_since is not None for p in self.pods)

    async def _create(self, n: int) -> None:
        for _ in range(n):
            self._made += 1
            name = f"rs-r{self.revision}-{self._made}"
            self.pods.append(Pod(name, self.revision, self._made, await self.make(name, self.revision)))

    async def _remove(self, victims: list[Pod]) -> None:
        for p in victims:
            self.pods.remove(p)
            await self.delete(p)

    async def step(self) -> bool:
        """One sync of the controller; True when it scaled anything."""
        self.steps += 1
        new, total = len(self.new), len(self.pods)
        if new < self.replicas and total < self.replicas + self.max_surge:
            await self._create(min(self.replicas + self.max_surge - total, self.replicas - new))
            return True
        old = self.old
        if not old:
            return False
        min_available = self.replicas - self.max_unavailable
        new_unavailable = sum(1 for p in self.new if p.ready_since is None)
        max_down = total - min_available - new_unavailable
        if max_down <= 0:
            return False
        unhealthy = [p for p in old if p.ready_since is None][:max_down]
        await self._remove(unhealthy)
        available = sum(1 for p in self.pods if p.ready_since is not None)
        down = max(0, available - min_available)
        ranked = sorted((p for p in self.old if p.ready_since is not None), key=lambda p: -p.ready_since)  # type: ignore[operator]
        await self._remove(ranked[:down])
        return bool(unhealthy) or down > 0


def disruptions_allowed(expected: int, healthy: int, max_unavailable: int) -> int:
    """A PodDisruptionBudget's ``status.disruptionsAllowed`` with ``maxUnavailable``
    (kubernetes ``pkg/controller/disruption/disruption.go``, getExpectedPodCount and
    updatePdbStatus: desiredHealthy =
    expectedCount - maxUnavailable; allowed = currentHealthy - desiredHealthy, at
    least 0). An eviction (a node drain) goes through only while it is above 0."""
    return max(0, healthy - max(0, expected - max_unavailable))
