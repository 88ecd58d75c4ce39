"""Validated settings of a Kubernetes provider and of each pool that uses it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _namespace(v: str) -> str:
    if not _DNS_LABEL.match(v):
        raise ValueError("a namespace is a DNS label: lower-case letters, digits and '-', at most 63")
    return v


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _duration(v: Any) -> Any:
    """``90``, ``90s``, ``10m``, ``1h`` → seconds."""
    if isinstance(v, str):
        m = _DURATION.match(v)
        if not m:
            raise ValueError(f"{v!r} is not a duration (e.g. 300, 90s, 10m, 1h)")
        return float(m.group(1)) * _FACTOR[m.group(2)]
    return v


def _file_mode(v: Any) -> Any:
    """``0o440``, ``"0440"``, ``"440"`` (octal strings) or an int."""
    if isinstance(v, str):
        try:
            return int(v.removeprefix("0o"), 8)
        except ValueError:
            raise ValueError(f"{v!r} is not an octal file mode (e.g. 0400)") from None
    return v


Duration = Annotated[float, BeforeValidator(_duration)]
FileMode = Annotated[int, BeforeValidator(_file_mode)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KubernetesSettings(_Model):
    """``providers[].options`` of a provider of type ``kubernetes``."""

    namespace: str = "default"
    # Further namespaces pools may put their Pods in (listed and watched too).
    extra_namespaces: tuple[str, ...] = ()
    # How to reach the API server: in-cluster service account (None: when
    # KUBERNETES_SERVICE_HOST is set), else a kubeconfig file / context.
    in_cluster: bool | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    api_url: str | None = None  # override the server URL (tests, kubectl proxy)
    api_concurrency: int = Field(default=8, ge=1, le=128)  # blocking calls in flight at once
    request_timeout: Duration = Field(default=30.0, gt=0)
    watch: bool = True
    watch_timeout: int = Field(default=300, ge=1)  # server-side timeoutSeconds of one watch request
    watch_backoff_initial: Duration = Field(default=0.5, gt=0)
    watch_backoff_max: Duration = Field(default=30.0, gt=0)
    watch_queue_size: int = Field(default=1000, ge=1)
    # A Pod stuck Pending (unschedulable, image pull, config error) longer
    # than this is reported FAILED with the reason; pools may override.
    boot_timeout: Duration = Field(default=300.0, gt=0)

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str) -> str:
        return _namespace(v)

    @field_validator("extra_namespaces")
    @classmethod
    def _extra(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_namespace(n) for n in v)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.namespace, *self.extra_namespaces)))


class KubernetesPoolOptions(_Model):
    """``pools[].provider_options`` of a pool on a Kubernetes provider."""

    namespace: str | None = None  # must be the provider's namespace or one of extra_namespaces
    # A Pod template ({metadata: {labels, annotations}, spec: {...}}) merged over
    # the defaults the way ARC merges its ``template``; a container named
    # ``runner`` in it is merged into the runner container.
    template: dict[str, Any] = Field(default_factory=dict)
    container_mode: Literal["host", "dind"] = "host"
    # dind runs a privileged sidecar: it must be switched on explicitly.
    allow_privileged_dind: bool = False
    dind_image: str = "docker:dind"
    runner_container: str = "runner"
    credential_file_mode: FileMode = Field(default=0o400, ge=0, le=0o777)
    boot_timeout: Duration | None = Field(default=None, gt=0)

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str | None) -> str | None:
        return None if v is None else _namespace(v)

    @field_validator("template")
    @classmethod
    def _template(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = set(v) - {"metadata", "spec"}
        if unknown:
            raise ValueError(f"a pod template has only metadata and spec, not {sorted(unknown)}")
        spec = v.get("spec") or {}
        if not isinstance(spec, dict):
            raise ValueError("template.spec must be a mapping")
        policy = spec.get("restartPolicy")
        if policy not in (None, "Never"):
            raise ValueError("template.spec.restartPolicy must be Never (a runner runs one job)")
        for key in ("containers", "initContainers", "volumes"):
            items = spec.get(key)
            if items is not None and (
                not isinstance(items, list) or not all(isinstance(c, dict) and c.get("name") for c in items)
            ):
                raise ValueError(f"template.spec.{key} must be a list of mappings, each with a name")
        return v

    @model_validator(mode="after")
    def _dind(self) -> KubernetesPoolOptions:
        if self.container_mode == "dind" and not self.allow_privileged_dind:
            raise ValueError(
                "container_mode dind runs a privileged docker:dind sidecar; set allow_privileged_dind: true to opt in"
            )
        return self
