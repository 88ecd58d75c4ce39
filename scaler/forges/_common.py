"""Small helpers shared by the forge adapters: JSON bodies, timestamps,
versions, scope paths and the default clock."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from scaler.clock import Clock, SystemClock
from scaler.domain.job import JobState
from scaler.errors import MalformedDelivery

__all__ = [
    "Clock",
    "SystemClock",
    "as_int",
    "gitea_scope_path",
    "iso_to_epoch",
    "load_object",
    "parse_version",
    "str_list",
]


def load_object(body: bytes) -> dict[str, Any]:
    """The delivery body as a JSON object, or :class:`MalformedDelivery`."""
    try:
        # orjson: the stdlib parser was a third of a delivery's CPU (6-7 KB
        # payloads); it is also stricter (no NaN, invalid UTF-8 rejected).
        data = orjson.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedDelivery("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedDelivery("body is not a JSON object")
    return data


def as_int(value: object, what: str) -> int:
    """An integer id (JSON number or a decimal string, as proto3 JSON sends int64)."""
    if isinstance(value, bool):
        raise MalformedDelivery(f"{what} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise MalformedDelivery(f"{what} must be an integer")


def opt_int(value: object) -> int | None:
    try:
        return as_int(value, "value") if value is not None else None
    except MalformedDelivery:
        return None


def str_list(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise MalformedDelivery(f"{what} must be a list of strings")
    return tuple(value)


def obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedDelivery(f"{what} must be a JSON object")
    return value


def iso_to_epoch(value: object) -> float | None:
    """Seconds since the epoch from an ISO-8601 time; ``None`` for zero/absent."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``1.24.3`` → (1, 24, 3); ``16.0.1+gitea-1.22.0`` → (16, 0, 1)."""
    m = _VERSION.search(text or "")
    if not m:
        return None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def gitea_scope_path(kind: str, name: str | None) -> str:
    """The API prefix of a Gitea/Forgejo scope (under ``/api/v1``)."""
    if kind == "repository" and name:
        owner, repo = name.split("/", 1)
        return f"/repos/{owner}/{repo}"
    if kind == "organization" and name:
        return f"/orgs/{name}"
    if kind == "user":
        return "/user"
    if kind == "instance":
        return "/admin"
    raise ValueError(f"scope {kind!r} is not supported by Gitea/Forgejo (use repository, organization, user, instance)")


_REPO_IN_URL = re.compile(r"/repos/([^/]+)/([^/]+)/actions/")


def repository_from_url(*urls: object) -> str | None:
    for url in urls:
        if isinstance(url, str):
            m = _REPO_IN_URL.search(url)
            if m:
                return f"{m.group(1)}/{m.group(2)}"
    return None


def first_header(headers: Mapping[str, str], *names: str) -> str | None:
    for n in names:
        v = headers.get(n)
        if v:
            return v.strip()
    return None


def action_state(
    table: Mapping[str, JobState | str], action: str | None, status: str | None, conclusion: str | None
) -> JobState | str:
    """The job state a ``workflow_job`` delivery reports, or why it is ignored.

    ``table`` maps each action (or status) of one forge's vocabulary to a state,
    or to the reason no runner is needed for it."""
    key = action or status or ""
    result = table.get(key)
    if result is None:
        return f"unknown workflow_job action {key!r}"
    if result is JobState.COMPLETED and conclusion == "skipped":
        return "job was skipped; no runner needed"
    return result
