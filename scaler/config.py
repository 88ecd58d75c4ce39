"""Configuration: one YAML file validated into frozen objects.

Every error names its key path (``pools[2].max: must be >= min_idle (got 1 <
3)``) and all errors are reported at once. Secrets are only read from
``*_file`` keys or ``*_env`` variables; a key that looks like an inline secret
is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from scaler.domain.labels import RepositoryAllowList, label_name
from scaler.durations import parse_duration
from scaler.errors import ConfigError
from scaler.forges.options import OPTIONS_BY_TYPE, ForgeOptions, split_inline_secrets
from scaler.naming import check_stems
from scaler.secrets import Secret, read_secret_env, read_secret_file


def _positive(seconds: float) -> float:
    # Every duration here is an interval or a timeout: 0 would make a loop
    # spin, a call fail at once or a record vanish as soon as it is written.
    if seconds <= 0:
        raise ValueError("must be greater than 0 (every interval and timeout is)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
# A duration whose model checks its own range (and may give 0 a meaning).
BoundedDuration = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")]

_INLINE_SECRET_KEYS = {"token", "secret", "password", "private_key", "webhook_secret", "webhook_secrets"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret comes from: exactly one of ``file`` / ``env``."""

    file: Path | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("give exactly one of file or env")
        return self

    def load(self) -> Secret:
        if self.file is not None:
            return read_secret_file(self.file)
        assert self.env is not None
        return read_secret_env(self.env)

    def describe(self) -> str:
        return f"file {self.file}" if self.file is not None else f"environment variable {self.env}"


class Scope(_Model):
    """Where runners register: a repository, organisation, user or the instance."""

    kind: Literal["repository", "organization", "user", "instance", "enterprise"]
    name: str | None = None  # owner/repo, org, user; enterprise slug; none for instance

    @model_validator(mode="after")
    def _name(self) -> Scope:
        if self.kind == "instance":
            if self.name:
                raise ValueError("instance scope takes no name")
        elif not self.name:
            raise ValueError(f"{self.kind} scope needs a name")
        elif self.kind == "repository" and self.name.count("/") != 1:
            raise ValueError(f"repository scope name must be owner/repo (got {self.name!r})")
        return self


class GitHubApp(_Model):
    app_id: int
    private_key_file: Path
    installation_id: int | None = None


class ForgeConfig(_Model):
    name: Name
    type: Literal["gitea", "forgejo", "github", "fake"]
    url: str = Field(min_length=1)  # web/API base, e.g. https://gitea.example.com or https://api.github.com
    scope: Scope
    token_file: Path | None = None
    token_env: str | None = None
    github_app: GitHubApp | None = None
    webhook_secret_files: tuple[Path, ...] = ()
    webhook_secret_envs: tuple[str, ...] = ()
    poll_interval: Duration = 30.0
    request_timeout: Duration = 10.0
    # Forge calls in flight (mints, teardowns, resync pages, deregistrations
    # share them, round-robin) and the HTTP connection pool's size.
    concurrency: int = Field(default=16, ge=1, le=256)
    insecure_pass_registration_token: bool = False
    # Forge-specific knobs, validated by the model of ``type``
    # (``scaler.forges.options``: runner image, runner group, cache server, …).
    # SerializeAsAny: a dump (e.g. for a provider's validate_pool) keeps the
    # subclass's fields, not only the base model's.
    options: SerializeAsAny[ForgeOptions] = Field(default_factory=ForgeOptions)

    @model_validator(mode="before")
    @classmethod
    def _typed_options(cls, data: Any) -> Any:
        """``options`` validated by its forge type's model, each problem
        named by its path under ``options``."""
        if not isinstance(data, Mapping):
            return data
        model = OPTIONS_BY_TYPE.get(str(data.get("type")))
        raw = data.get("options")
        if model is None or isinstance(raw, ForgeOptions):
            return data
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise _NestedProblems([f"options: must be a mapping of keys (got {type(raw).__name__})"])
        cleaned, problems = split_inline_secrets(dict(raw))
        try:
            typed = model.model_validate(cleaned)
        except ValidationError as err:
            problems += _problems(err)
        if problems:
            raise _NestedProblems([f"options.{p}" for p in problems])
        return {**data, "options": typed}

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http(s) URL (got {v!r})")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _auth(self) -> ForgeConfig:
        if not (self.webhook_secret_files or self.webhook_secret_envs):
            raise ValueError("a webhook secret is required: set webhook_secret_files or webhook_secret_envs")
        if self.type != "fake" and not (self.token_file or self.token_env or self.github_app):
            raise ValueError("an API credential is required: set token_file, token_env or github_app")
        if self.github_app and self.type != "github":
            raise ValueError("github_app is only for type github")
        return self

    def token(self) -> Secret | None:
        if self.token_file:
            return read_secret_file(self.token_file)
        if self.token_env:
            return read_secret_env(self.token_env)
        return None

    def webhook_secrets(self) -> list[Secret]:
        return [read_secret_file(p) for p in self.webhook_secret_files] + [
            read_secret_env(e) for e in self.webhook_secret_envs
        ]

    def secret_files(self) -> list[Path]:
        files = [*self.webhook_secret_files]
        if self.token_file:
            files.append(self.token_file)
        if self.github_app:
            files.append(self.github_app.private_key_file)
        cache_secret = getattr(self.options, "cache_secret_file", None)
        if isinstance(cache_secret, Path):
            files.append(cache_secret)
        return files


class ProviderConfig(_Model):
    name: Name
    type: str = Field(min_length=1)  # entry-point name in runner_scaler.providers
    max_instances: int | None = Field(default=None, ge=0)
    concurrency: int = Field(default=8, ge=1, le=1024)
    create_timeout: Duration = 120.0
    delete_timeout: Duration = 60.0
    options: Mapping[str, Any] = Field(default_factory=dict)


class WarmConfig(_Model):
    """Keep idle runners by a wait target instead of a fixed number
    (``scaler.warm``): as many as the forecast of the pool's arrivals within
    the provider's start time needs for ``quantile`` of jobs to wait at most
    ``target_wait``, bounded by ``min_idle``, ``max_idle``, ``max`` and the caps."""

    target_wait: Duration = Field(gt=0)
    quantile: float = Field(default=0.95, ge=0.5, le=0.999)
    max_idle: int = Field(default=10, ge=0)
    # How long a runner takes from create to online; learned from the pool's
    # own instances when unset.
    start_time: Duration | None = Field(default=None, gt=0)
    # How much of the forge's job history to learn from at start-up.
    history: Duration = Field(default=14 * 86400.0, ge=0, le=90 * 86400.0)


class PoolConfig(_Model):
    name: Name
    forge: str
    provider: str
    labels: tuple[str, ...] = Field(min_length=1)  # runner labels registered (full scheme labels)
    image: str | None = None  # overrides the forge's default runner image
    min_idle: int = Field(default=0, ge=0)
    max: int = Field(default=10, ge=0)
    boot_timeout: Duration = 300.0
    idle_timeout: Duration = 600.0
    max_lifetime: Duration = 6 * 3600.0
    repositories: tuple[str, ...] = ("*",)
    priority: int = 0
    runner_group: str | None = None
    provider_options: Mapping[str, Any] = Field(default_factory=dict)
    warm: WarmConfig | None = None

    @model_validator(mode="after")
    def _bounds(self) -> PoolConfig:
        if self.max < self.min_idle:
            raise ValueError(f"max: must be >= min_idle (got {self.max} < {self.min_idle})")
        if self.warm is not None and self.warm.max_idle < self.min_idle:
            raise ValueError(f"warm: max_idle must be >= min_idle (got {self.warm.max_idle} < {self.min_idle})")
        for label in self.labels:
            if not label_name(label):
                raise ValueError(f"labels: empty label name in {label!r}")
        for repo in self.repositories:
            if repo != "*" and not re.match(r"^[^/\s]+/[^/\s]+$", repo):
                raise ValueError(f"repositories: {repo!r} is not owner/repo, owner/* or *")
        return self

    @property
    def allow_list(self) -> RepositoryAllowList:
        return RepositoryAllowList(self.repositories)

    @property
    def label_names(self) -> frozenset[str]:
        return frozenset(label_name(x) for x in self.labels)


class Limits(_Model):
    max_instances: int = Field(default=200, ge=0)
    event_queue_size: int = Field(default=10_000, ge=1)
    delivery_cache_size: int = Field(default=10_000, ge=1)
    # Mints in flight across all forges. Each forge's ``concurrency`` (shared
    # fairly with teardowns and listings) bounds them per forge; at 8 this cap
    # held a 1,000-job burst to 8 / mint round trip (~500/s over loopback) and
    # accepted -> create p99 to 1.3 s, at 64 (forge concurrency 16) it is 0.34 s.
    mint_concurrency: int = Field(default=64, ge=1, le=1024)
    backoff_initial: Duration = 2.0
    backoff_max: Duration = 300.0
    max_attempts: int = Field(default=5, ge=1)


class Timing(_Model):
    """How often each loop runs; webhooks wake the reconciler in between."""

    reconcile_interval: Duration = 5.0
    resync_interval: Duration = 30.0
    collect_interval: Duration = 10.0
    # Kept so late reports about a finished job/instance are recognised.
    tombstone_ttl: Duration = 3600.0


class ServerConfig(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # The URL the forges reach this scaler at (behind any proxy or ingress):
    # webhooks go to ``{public_url}/webhooks/{forge}``. ``webhook install``
    # and ``webhook list`` use it when no ``--url`` is given.
    public_url: str | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+[^\s]*$", v):
            raise ValueError(f"must be an http(s) URL (got {v!r})")
        return v.rstrip("/") if v is not None else None

    def webhook_url(self, forge: str) -> str | None:
        """Where ``forge``'s webhooks reach this scaler, if ``public_url`` is set."""
        return f"{self.public_url}/webhooks/{forge}" if self.public_url else None


class LoggingConfig(_Model):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class LeaderElection(_Model):
    enabled: bool = False
    lease_name: str = "runner-scaler"
    namespace: str = "default"
    lease_duration: Duration = 15.0
    renew_deadline: Duration = 10.0
    retry_period: Duration = 2.0
    identity: str | None = None  # default: hostname
    # Where the Lease lives: in-cluster config by default, else this kubeconfig.
    kubeconfig: Path | None = None
    context: str | None = None
    # How followers reach this replica while it leads (they forward webhooks
    # and API reads there). Default: http://$POD_IP:<server.port> when POD_IP
    # is set (the chart sets it), else nothing is forwarded (503).
    advertise_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")
    # How long a follower holds a delivery while no leader is reachable (a
    # hand-over). Keep it under the forge's delivery timeout (Gitea: 5s).
    forward_timeout: Duration = Field(default=4.0, gt=0)


class UIAuth(_Model):
    """Who may read ``/ui``: HTTP basic (a username and a password) or a
    bearer token, the secret from a file or an environment variable."""

    type: Literal["basic", "bearer"]
    username: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[^:\s]+$")
    password_file: Path | None = None
    password_env: str | None = None
    token_file: Path | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> UIAuth:
        key = "password" if self.type == "basic" else "token"
        other = "token" if self.type == "basic" else "password"
        if self.type == "basic" and not self.username:
            raise ValueError("username: basic auth needs a username")
        if self.type == "bearer" and self.username:
            raise ValueError("username: only for type basic")
        if (getattr(self, f"{key}_file") is None) == (getattr(self, f"{key}_env") is None):
            raise ValueError(f"{key}_file: {self.type} auth needs exactly one of {key}_file or {key}_env")
        if getattr(self, f"{other}_file") is not None or getattr(self, f"{other}_env") is not None:
            raise ValueError(f"{other}_file: not used by {self.type} auth (it takes {key}_file or {key}_env)")
        return self

    def secret(self) -> Secret:
        key = "password" if self.type == "basic" else "token"
        path, env = getattr(self, f"{key}_file"), getattr(self, f"{key}_env")
        return read_secret_file(path) if path is not None else read_secret_env(env)


class UIConfig(_Model):
    """The operator pages at ``/ui`` (read-only)."""

    # auto: served to loopback clients only (a port-forward, a browser on the
    # host); true: to every client (put auth in front); false: not served.
    enabled: Literal["auto"] | bool = "auto"
    auth: UIAuth | None = None
    refresh: BoundedDuration = 1.0  # how often open pages fetch fresh content
    sample_interval: BoundedDuration = 10.0  # queue depth / job wait chart resolution (one hour kept)
    check_interval: BoundedDuration = 60.0  # re-probe forges and providers (`check`) while a page is open; 0: never
    journal_jobs: int = Field(default=2000, ge=10, le=100_000)  # job stories kept
    journal_entries: int = Field(default=32, ge=8, le=256)  # entries per story
    page_rows: int = Field(default=100, ge=10, le=5000)  # rows per page of a table

    @model_validator(mode="after")
    def _bounds(self) -> UIConfig:
        if not 0.25 <= self.refresh <= 2.0:
            raise ValueError(f"refresh: must be between 250ms and 2s (got {self.refresh:g}s)")
        if not 1.0 <= self.sample_interval <= 300.0:
            raise ValueError(f"sample_interval: must be between 1s and 5m (got {self.sample_interval:g}s)")
        if self.check_interval and self.check_interval < 10.0:
            raise ValueError(f"check_interval: must be 0 (never) or at least 10s (got {self.check_interval:g}s)")
        return self

    @property
    def on(self) -> bool:
        return self.enabled is not False


class Config(_Model):
    controller_id: Name = "runner-scaler"
    forges: tuple[ForgeConfig, ...] = Field(min_length=1)
    providers: tuple[ProviderConfig, ...] = Field(min_length=1)
    pools: tuple[PoolConfig, ...] = Field(min_length=1)
    limits: Limits = Limits()
    timing: Timing = Timing()
    server: ServerConfig = ServerConfig()
    logging: LoggingConfig = LoggingConfig()
    leader_election: LeaderElection = LeaderElection()
    ui: UIConfig = UIConfig()

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[str] = []
        named: tuple[tuple[str, Sequence[ForgeConfig | ProviderConfig | PoolConfig]], ...] = (
            ("forges", self.forges),
            ("providers", self.providers),
            ("pools", self.pools),
        )
        for kind, items in named:
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    problems.append(f"{kind}[{i}].name: duplicate name {item.name!r}")
                seen.add(item.name)
        forges = {f.name for f in self.forges}
        providers = {p.name for p in self.providers}
        for i, pool in enumerate(self.pools):
            if pool.forge not in forges:
                problems.append(f"pools[{i}].forge: no forge named {pool.forge!r} (have: {', '.join(sorted(forges))})")
            if pool.provider not in providers:
                problems.append(
                    f"pools[{i}].provider: no provider named {pool.provider!r} (have: {', '.join(sorted(providers))})"
                )
        problems += [f"pools: {p}" for p in check_stems(self.controller_id, (p.name for p in self.pools))]
        if problems:
            raise _CrossProblems(problems)
        return self

    def pool(self, name: str) -> PoolConfig:
        return next(p for p in self.pools if p.name == name)

    def forge(self, name: str) -> ForgeConfig:
        return next(f for f in self.forges if f.name == name)

    def provider(self, name: str) -> ProviderConfig:
        return next(p for p in self.providers if p.name == name)


class _CrossProblems(ValueError):
    """Problems with their full key paths (raised at the top level)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _NestedProblems(_CrossProblems):
    """Problems with paths relative to the object that raised them."""


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _strip_inline_secrets(data: object, loc: str, problems: list[str]) -> object:
    """Remove inline secret keys (reported) so the rest is still validated."""
    if isinstance(data, Mapping):
        out = {}
        for key, value in data.items():
            path = f"{loc}.{key}" if loc else str(key)
            if key in _INLINE_SECRET_KEYS and not isinstance(value, Mapping):
                problems.append(
                    f"{path}: secrets are never written inline; use {key}_file (a path) or {key}_env (a variable name)"
                )
                continue
            if key in ("options", "provider_options"):
                # Free-form (providers validate their own), but a secret
                # written inline there is still a secret written inline.
                kept = {}
                for k, v in value.items() if isinstance(value, Mapping) else ():
                    if k in _INLINE_SECRET_KEYS and not isinstance(v, Mapping):
                        problems.append(f"{path}.{k}: secrets are never written inline; use a file or a variable")
                        continue  # reported once, not again as an unknown key
                    kept[k] = v
                out[key] = kept if isinstance(value, Mapping) else value
                continue
            out[key] = _strip_inline_secrets(value, path, problems)
        return out
    if isinstance(data, list):
        return [_strip_inline_secrets(v, f"{loc}[{i}]", problems) for i, v in enumerate(data)]
    return data


def _problems(err: ValidationError) -> list[str]:
    problems: list[str] = []
    errors = err.errors(include_url=False)
    failed_items = {tuple(e["loc"][:1]) for e in errors if len(e["loc"]) > 1}
    for e in errors:
        if e["type"] == "too_short" and tuple(e["loc"]) in failed_items:
            continue  # pydantic's echo of an item that failed, not a real "empty"
        ctx_err = (e.get("ctx") or {}).get("error")
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        if isinstance(ctx_err, _NestedProblems):
            prefix = _loc(loc) + "." if loc else ""
            problems.extend(prefix + p for p in ctx_err.problems)
            continue
        if isinstance(ctx_err, _CrossProblems):
            problems.extend(ctx_err.problems)
            continue
        msg = e["msg"].removeprefix("Value error, ")
        # Model-level validators name their key in the message ("max: ..."):
        # fold it into the path so every line reads "path.key: reason".
        m = re.match(r"^([a-z_]+): (.*)$", msg, re.S)
        if e["type"] == "value_error" and m:
            loc = [*loc, m.group(1)]
            msg = m.group(2)
        elif e["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{_loc(loc)}: {msg}")
    return problems


def parse_config(data: object) -> Config:
    """Validate a parsed YAML document; raise ConfigError listing every problem."""
    if not isinstance(data, Mapping):
        raise ConfigError([f"(top level): expected a mapping of keys, got {type(data).__name__}"])
    problems: list[str] = []
    cleaned = _strip_inline_secrets(data, "", problems)
    try:
        config = Config.model_validate(cleaned)
    except ValidationError as err:
        raise ConfigError(problems + _problems(err)) from None
    if problems:
        raise ConfigError(problems)
    return config


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read config file ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigError([f"{p}: not valid YAML{line}: {getattr(exc, 'problem', exc)}"]) from None
    return parse_config(data)
