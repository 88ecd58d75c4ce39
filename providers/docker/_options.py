"""Validated settings of a Docker provider and of each pool that uses it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def parse_size(value: int | str) -> int:
    """``512m``, ``2g``, ``1.5GiB`` or a byte count → bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512m or 2g")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be > 0")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size (e.g. 512m, 2g, 1073741824)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise ValueError("must be > 0")
    return n


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostTLS(_Model):
    """Client certificate authentication for ``tcp://`` hosts (dockerd ``--tlsverify``)."""

    ca_file: Path | None = None  # None: the system trust store
    cert_file: Path
    key_file: Path
    server_name: str | None = None  # expected name in the server certificate (default: the URL's host)


class HostConfig(_Model):
    name: str
    url: str  # unix:///run/docker.sock | tcp://host:2376
    tls: HostTLS | None = None
    max_instances: int | None = Field(default=None, ge=0)  # per-host cap (overrides the provider's)
    labels: tuple[str, ...] = ()  # free-form tags; pools may select hosts by name

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _HOST_NAME.match(v):
            raise ValueError("letters, digits, '_', '.', '-' (max 63)")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v.startswith("unix://"):
            path = v[len("unix://") :]
            if not path.startswith("/"):
                raise ValueError("unix:// needs an absolute socket path, e.g. unix:///run/docker.sock")
            return v
        if v.startswith("tcp://"):
            rest = v[len("tcp://") :].rstrip("/")
            host, sep, port = rest.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("tcp:// needs host:port, e.g. tcp://10.0.0.5:2376")
            return v
        raise ValueError("must start with unix:// or tcp://")

    @property
    def socket_path(self) -> str | None:
        return self.url[len("unix://") :] if self.url.startswith("unix://") else None

    @property
    def base_url(self) -> str:
        if self.socket_path is not None:
            return "http://docker"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.url[len('tcp://') :].rstrip('/')}"


class DockerSettings(_Model):
    """``providers[].options`` of a ``type: docker`` provider."""

    hosts: tuple[HostConfig, ...] = Field(min_length=1)
    placement: Literal["spread", "pack"] = "spread"
    max_per_host: int | None = Field(default=None, ge=0)  # default per-host cap
    api_version: str | None = None  # e.g. "1.41"; None: the engine's own version
    request_timeout: float = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    pull_timeout: float = Field(default=900.0, gt=0)
    health_interval: float = Field(default=10.0, gt=0)  # probe of unhealthy hosts
    resync_interval: float = Field(default=60.0, gt=0)  # periodic list behind the events stream
    events: bool = True
    watch_queue_size: int = Field(default=1024, ge=1)
    reconnect_max_delay: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _unique(self) -> DockerSettings:
        names = [h.name for h in self.hosts]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"hosts: duplicate host name(s) {', '.join(dup)}")
        return self

    def cap(self, host: HostConfig) -> int | None:
        return host.max_instances if host.max_instances is not None else self.max_per_host


class Resources(_Model):
    cpus: float | None = Field(default=None, gt=0)  # NanoCpus
    memory: int | None = None  # bytes; accepts "512m", "2g"
    memory_swap: int | None = None  # bytes incl. memory; -1 unlimited; default = memory (no swap)
    pids: int | None = Field(default=None, gt=0)
    shm_size: int | None = None

    @field_validator("memory", "shm_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        return None if v is None else parse_size(v)

    @field_validator("memory_swap", mode="before")
    @classmethod
    def _swap(cls, v: Any) -> Any:
        if v is None or v == -1:
            return v
        return parse_size(v)


class Mount(_Model):
    type: Literal["bind", "volume", "tmpfs"] = "bind"
    source: str | None = None  # host path (bind) or volume name; unused for tmpfs
    target: str
    read_only: bool = False

    @model_validator(mode="after")
    def _check(self) -> Mount:
        if not self.target.startswith("/"):
            raise ValueError("target: must be an absolute path")
        if self.type == "bind" and not (self.source and self.source.startswith("/")):
            raise ValueError("source: a bind mount needs an absolute host path")
        if self.type == "volume" and not self.source:
            raise ValueError("source: a volume mount needs a volume name")
        return self


NetworkMode = Annotated[str, Field(pattern=r"^(host|none|bridge|default|container:[A-Za-z0-9_.-]+|[A-Za-z0-9_.-]+)$")]


class DockerPoolOptions(_Model):
    """``pools[].provider_options`` of a pool on a Docker provider."""

    resources: Resources = Resources()
    network_mode: NetworkMode | None = None  # None: the engine default
    mounts: tuple[Mount, ...] = ()
    privileged: bool = False  # docker-in-docker runners; logged when used
    registry_auth_file: Path | None = None  # JSON {username, password[, serveraddress]} or {identitytoken}
    pull: Literal["missing", "always", "never"] = "missing"
    user: str | None = None  # "uid[:gid]" or a name known to the image
    file_owner: str | None = None  # "uid:gid" of the credential files (default: user if numeric, else 0:0)
    workdir: str | None = None
    hosts: tuple[str, ...] = ()  # restrict the pool to these host names (default: all)
    extra_labels: Mapping[str, str] = Field(default_factory=dict)
    stop_timeout: int | None = Field(default=None, ge=0)
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    security_opt: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()

    @field_validator("file_owner")
    @classmethod
    def _owner(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d+:\d+", v):
            raise ValueError("must be uid:gid (numbers)")
        return v

    @field_validator("extra_labels")
    @classmethod
    def _labels(cls, v: Mapping[str, str]) -> Mapping[str, str]:
        for key in v:
            if key.startswith("runner-scaler.io/"):
                raise ValueError(f"{key}: the runner-scaler.io/ prefix is reserved for the scaler's stamps")
        return dict(v)

    def owner(self) -> tuple[int, int]:
        spec = self.file_owner
        if spec is None and self.user is not None:
            uid, _, gid = self.user.partition(":")
            if uid.isdigit() and (not gid or gid.isdigit()):
                return int(uid), int(gid or uid)
            return 0, 0
        if spec is None:
            return 0, 0
        u, g = spec.split(":")
        return int(u), int(g)
