"""Small helpers shared by the forge adapters: JSON bodies, timestamps,
versions, scope paths and the default clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote

import orjson

from scaler.clock import Clock, SystemClock
from scaler.domain.job import JobState
from scaler.errors import ForgeTemporaryError, MalformedDelivery

_T = TypeVar("_T")

__all__ = [
    "INT64_MAX",
    "Clock",
    "SystemClock",
    "as_id",
    "as_int",
    "gitea_scope_path",
    "iso_to_epoch",
    "load_object",
    "opt_id",
    "parse_answer",
    "parse_each",
    "parse_version",
    "repository",
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


INT64_MAX = 2**63 - 1
_ID_RULE = "must be a positive integer that fits in int64"


def as_id(value: object, what: str) -> int:
    """A job, run or runner id: a positive integer that fits in int64.

    A JSON integer, or a decimal string (proto3 JSON writes int64 as one).
    Everything else is refused naming ``what``: a bool, a float (orjson turns
    integers beyond 64 bits into floats, so ``10**30`` and ``10**30 + 1``
    would collapse into one id), zero, a negative number, anything past
    int64 (what every forge stores ids as)."""
    if isinstance(value, bool):
        raise MalformedDelivery(f"{what} {_ID_RULE} (got a boolean)")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and 0 < len(value) <= 19 and value.isascii() and value.isdigit():
        number = int(value)
    elif value is None:
        raise MalformedDelivery(f"{what} is missing")
    else:
        raise MalformedDelivery(f"{what} {_ID_RULE} (got {_kind(value)})")
    if not 0 < number <= INT64_MAX:
        raise MalformedDelivery(f"{what} {_ID_RULE} (got {_short(number)})")
    return number


def as_int(value: object, what: str) -> int:
    """An id the forge answered with (kept for callers of the old name)."""
    return as_id(value, what)


def opt_id(value: object, what: str = "value") -> int | None:
    """An optional id: absent, ``null`` or ``0`` (Go's zero value) is ``None``;
    anything else must be a valid id."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value == 0):
        return None
    return as_id(value, what)


def opt_int(value: object) -> int | None:
    """An optional id where a bad value means "unknown" (not a refusal)."""
    try:
        return opt_id(value)
    except MalformedDelivery:
        return None


def _kind(value: object) -> str:
    if isinstance(value, float):
        return "a number with a fraction or beyond 64 bits"
    if isinstance(value, str):
        return "a string that is not a decimal integer"
    return f"a {type(value).__name__}"


def _short(number: int) -> str:
    text = str(number) if -(10**30) < number < 10**30 else ("-" if number < 0 else "") + "a huge number"
    return text


def repository(value: object, what: str, problem: Callable[[object], str | None]) -> str:
    """A repository ``owner/name`` checked by the forge's own rule."""
    if not isinstance(value, str):
        raise MalformedDelivery(f"{what} must be a string owner/name")
    why = problem(value)
    if why is not None:
        raise MalformedDelivery(f"{what} {why} (got {value[:80]!r})")
    return value


MAX_LABELS = 256
MAX_LABEL_LENGTH = 1024


def str_list(value: object, what: str) -> tuple[str, ...]:
    """A list of strings (``null`` is empty: Go encodes a nil slice so).

    Bounded (the jobs' labels key caches): GitHub allows 100 labels per
    runner, Gitea and Forgejo store ``runs-on`` as given."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise MalformedDelivery(f"{what} must be a list of strings")
    if len(value) > MAX_LABELS:
        raise MalformedDelivery(f"{what} has {len(value)} entries (at most {MAX_LABELS})")
    if any(len(x) > MAX_LABEL_LENGTH for x in value):
        raise MalformedDelivery(f"{what} has an entry over {MAX_LABEL_LENGTH} characters")
    return tuple(value)


def parse_each(items: list[Any], parse: Callable[[Any], _T], log: Any, forge: str, what: str) -> list[_T]:
    """Each item of a forge listing parsed; one that no forge could have sent
    (a bad id, a bad name) is logged and skipped, not a failure of the rest."""
    out: list[_T] = []
    for item in items:
        try:
            out.append(parse(item))
        except MalformedDelivery as exc:
            log.warning(f"{what} skipped", forge=forge, reason=str(exc))
    return out


def parse_answer(parse: Callable[[Any], _T], data: Any, forge: str, what: str) -> _T:
    """A single answer parsed; a malformed one is a temporary forge error."""
    try:
        return parse(data)
    except MalformedDelivery as exc:
        raise ForgeTemporaryError(f"{forge}: {what}: unexpected answer ({exc})") from None


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
    """``owner/name`` from an API URL (path-escaped, as Gitea writes them)."""
    for url in urls:
        if isinstance(url, str) and len(url) < 4096:
            m = _REPO_IN_URL.search(url)
            if m:
                return f"{unquote(m.group(1))}/{unquote(m.group(2))}"
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
