"""``forges[].options``: one frozen pydantic model per forge type.

Unknown keys are configuration errors named by their path
(``forges[0].options.runner_imagee: unknown key``), and a key that holds a
secret inline (``cache_secret``, ``token``, …) is refused: secrets come from
files (``*_file``). ``scaler.config`` validates a forge's ``options`` with
the model of its ``type`` (``OPTIONS_BY_TYPE``); adapters read attributes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scaler.domain.repository import is_repository_name

# Keys that would carry a secret in the clear; ``<key>_file`` is the way.
_SECRET_WORDS = ("secret", "token", "password", "private_key", "credential")

_T = TypeVar("_T", bound="ForgeOptions")
NonEmpty = Annotated[str, Field(min_length=1)]


def split_inline_secrets(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``raw`` without the keys that would hold a secret inline, and a problem
    (``key: …``) for each of them."""
    kept: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        text = str(key).lower()
        if any(w in text for w in _SECRET_WORDS) and not text.endswith(("_file", "_env")):
            problems.append(f"{key}: secrets are never written inline; use {key}_file (a path to a 0600 file)")
        else:
            kept[key] = value
    return kept, problems


class ForgeOptions(BaseModel):
    """What every forge type accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The image the instances run (a pool's ``image`` overrides it).
    runner_image: NonEmpty | None = None
    # Replaces the runner command (argv), e.g. with a stand-in runner in tests;
    # Forgejo appends the job handle (``--handle H``) to it.
    runner_command: tuple[NonEmpty, ...] | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            _, problems = split_inline_secrets(data)
            if problems:
                raise ValueError(problems[0])
        return data


class _RunnerFiles(ForgeOptions):
    """Gitea and Forgejo: where the runner's files go, and a shared cache."""

    runner_dir: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]*$")] = "/data"
    # A shared cache server for the runners (``cache.external_server``) and
    # the file holding its secret.
    cache_server: str | None = None
    cache_secret_file: Path | None = None

    @field_validator("cache_server")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"must be an http(s) URL (got {v!r})")
        return v


class GiteaOptions(_RunnerFiles):
    pass


class ForgejoOptions(_RunnerFiles):
    # Skip the version check of ``POST …/actions/runners`` (Forgejo ≥ 15), for
    # builds whose /version does not tell.
    assume_ephemeral_api: bool = False
    # ``forgejo-runner one-job --wait``: keep asking until the job is handed
    # over. Without it the runner asks once and exits 2 when no task came.
    one_job_wait: bool = True


class GitHubOptions(ForgeOptions):
    # Requests kept in reserve of the rate-limit budget (mints, deregisters).
    rate_limit_reserve: int = Field(default=100, ge=0)
    # Runner group for every pool without its own ``runner_group``.
    runner_group: NonEmpty | None = None
    runner_group_id: int = Field(default=1, ge=1)
    # Repositories to poll for queued jobs (needed for an enterprise scope).
    poll_repositories: tuple[str, ...] = ()

    @field_validator("poll_repositories")
    @classmethod
    def _repos(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for repo in v:
            if not is_repository_name(repo):
                raise ValueError(f"{repo!r} is not owner/name")
        return v


class FakeOptions(ForgeOptions):
    # Minted runners come online at once (the in-process fake forge).
    auto_online: bool = True


def typed(options: ForgeOptions, cls: type[_T]) -> _T:
    """``options`` as the model of its forge type (what config validation made)."""
    if not isinstance(options, cls):
        raise TypeError(f"forge options are {type(options).__name__}, not {cls.__name__}")
    return options


OPTIONS_BY_TYPE: dict[str, type[ForgeOptions]] = {
    "gitea": GiteaOptions,
    "forgejo": ForgejoOptions,
    "github": GitHubOptions,
    "fake": FakeOptions,
}

__all__ = [
    "OPTIONS_BY_TYPE",
    "FakeOptions",
    "ForgeOptions",
    "ForgejoOptions",
    "GitHubOptions",
    "GiteaOptions",
    "split_inline_secrets",
    "typed",
]
