"""Translating a Pod's phase and container states into an :class:`InstanceInfo`.

https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from providers.kubernetes._template import ANNOTATION_BOOT_TIMEOUT, ANNOTATION_PREFIX
from scaler.provider import InstanceInfo, InstanceStatus

# Waiting reasons that never get better by themselves: failed at once.
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons that may be transient: failed once the Pod is older than its boot timeout.
STUCK_WAITING = frozenset(
    {"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)
# Container termination reasons that mean "could not run", not "the runner finished".
FAILED_TERMINATION = frozenset({"OOMKilled", "ContainerCannotRun", "StartError", "DeadlineExceeded"})


def parse_time(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _runner_status(pod: Mapping[str, Any], runner: str) -> Mapping[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == runner:
            return dict(cs)
    return dict(statuses[0]) if statuses else None


def _condition(pod: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def stamps(pod: Mapping[str, Any]) -> dict[str, str]:
    """Labels and runner-scaler annotations, merged (what the core rebuilds state from)."""
    meta = pod.get("metadata") or {}
    out = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    for k, v in (meta.get("annotations") or {}).items():
        if str(k).startswith(ANNOTATION_PREFIX) and k != ANNOTATION_BOOT_TIMEOUT:
            out[str(k)] = str(v)
    return out


def translate(
    pod: Mapping[str, Any], *, now: float, default_boot_timeout: float, runner: str = "runner"
) -> InstanceInfo:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    created = parse_time(meta.get("creationTimestamp"))
    try:
        boot_timeout = float((meta.get("annotations") or {}).get(ANNOTATION_BOOT_TIMEOUT) or default_boot_timeout)
    except ValueError:
        boot_timeout = default_boot_timeout
    overdue = created is not None and now - created > boot_timeout
    host = (pod.get("spec") or {}).get("nodeName") or None

    def info(st: InstanceStatus, *, exit_code: int | None = None, reason: str | None = None) -> InstanceInfo:
        return InstanceInfo(
            name=str(meta.get("name", "")),
            status=st,
            labels=stamps(pod),
            created_at=created,
            exit_code=exit_code,
            reason=reason,
            host=host,
        )

    cs = _runner_status(pod, runner)
    state = (cs or {}).get("state") or {}
    term = state.get("terminated")
    disruption = _condition(pod, "DisruptionTarget")

    # The runner container ended: that is the instance's exit, whatever the sidecars do.
    if term is not None:
        code = term.get("exitCode")
        reason = term.get("reason")
        if reason in FAILED_TERMINATION:
            return info(InstanceStatus.FAILED, exit_code=code, reason=reason)
        if status.get("reason") == "Evicted" or (disruption and disruption.get("status") == "True" and code != 0):
            why = status.get("reason") or disruption_reason(disruption)
            return info(InstanceStatus.FAILED, exit_code=code, reason=why)
        return info(InstanceStatus.EXITED, exit_code=code, reason=None if code == 0 else reason)
    if phase == "Succeeded":
        return info(InstanceStatus.EXITED, exit_code=0)
    if phase == "Failed":
        return info(InstanceStatus.FAILED, reason=status.get("reason") or "Failed")
    if phase == "Unknown" or status.get("reason") == "NodeLost":
        return info(InstanceStatus.FAILED, reason=status.get("reason") or "NodeLost")
    if disruption is not None and disruption.get("status") == "True":
        return info(InstanceStatus.FAILED, reason=disruption_reason(disruption))
    if meta.get("deletionTimestamp") and phase == "Pending":
        return info(InstanceStatus.FAILED, reason="Deleted")
    if phase == "Running" and state.get("running") is not None:
        return info(InstanceStatus.RUNNING)
    waiting = state.get("waiting") or {}
    wreason = waiting.get("reason")
    if wreason in FATAL_WAITING:
        return info(InstanceStatus.FAILED, reason=wreason)
    if wreason in STUCK_WAITING:
        return info(InstanceStatus.FAILED if overdue else InstanceStatus.STARTING, reason=wreason)
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        sreason = scheduled.get("reason") or "Unschedulable"
        return info(InstanceStatus.FAILED if overdue else InstanceStatus.STARTING, reason=sreason)
    if overdue and phase == "Pending":
        return info(InstanceStatus.FAILED, reason=wreason or "BootTimeout")
    return info(InstanceStatus.STARTING, reason=wreason)


def disruption_reason(cond: Mapping[str, Any] | None) -> str:
    reason = str((cond or {}).get("reason") or "DisruptionTarget")
    return "NodeLost" if reason == "DeletionByTaintManager" else reason
