"""Structured logging: JSON lines off a terminal, readable console on one,
context bound per line, and a redaction processor that masks secrets
whatever the call site passed."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from scaler.secrets import Secret, secrets_in

MASK = "[REDACTED]"
_SECRET_KEYS = re.compile(r"(token|secret|password|passwd|authorization|private_key|jitconfig|credential)", re.I)
# Shapes of credentials that may appear inside free text.
_PATTERNS = [
    re.compile(r"(?i)(bearer|token)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"github_pat_[A-Za-z0-9_]{20,}"),
]


def _scrub(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str):
        for secret in secrets_in(value):
            value = value.replace(secret, MASK)
        for pat in _PATTERNS:
            value = pat.sub(MASK, value)
        return value
    if isinstance(value, Mapping):
        return {k: (MASK if _SECRET_KEYS.search(str(k)) and v else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, bytes):
        return _scrub(value.decode("utf-8", "replace"))
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and any known secret value."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key) and value and key != "event":
            event_dict[key] = MASK
        else:
            event_dict[key] = _scrub(value)
    return event_dict


def _stringify_exc(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Render exceptions early so the redactor sees their text too.
    exc = event_dict.get("exception")
    if exc is not None and not isinstance(exc, str):
        event_dict["exception"] = str(exc)
    return event_dict


def configure(level: str = "info", fmt: str = "auto", stream: Any = None, *, cache: bool = False) -> None:
    """Set up structlog and stdlib logging. ``cache`` binds each logger once
    (about 15 µs saved per call on a hot path); only for a process that never
    reconfigures, so the CLI sets it and tests do not."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _stringify_exc,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=cache,
    )
    # uvicorn and libraries log through stdlib logging: route it through the
    # same redaction.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.getLevelName(level.upper()))
    # httpx logs every request at INFO: a line per forge call (thousands a
    # minute under load, each scrubbed) that runner_scaler_forge_requests_total
    # already counts. Its warnings still come through.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return str(_scrub(super().format(record)))
