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


def _logger_name(logger: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # stdlib records carry their logger's name; our own loggers carry theirs
    # (see _NamedPrintLogger), so every line says where it came from.
    record = event_dict.get("_record")
    name = record.name if record is not None else getattr(logger, "name", None)
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


class _NamedPrintLogger(structlog.PrintLogger):
    """structlog's fast PrintLogger, remembering the name it was asked for."""

    def __init__(self, file: Any, name: str | None) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: Any) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args else None)


def _shared_chain() -> list[Any]:
    """Every line's processors up to rendering, for our loggers and stdlib's alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _logger_name,
        structlog.processors.format_exc_info,
        _stringify_exc,
        redact,
        # After the redactor: a timestamp holds no secret, and at 27
        # characters it would be scanned for one on every line.
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def configure(level: str = "info", fmt: str = "auto", stream: Any = None, *, cache: bool = False) -> None:
    """Set up structlog and stdlib logging as one pipeline: our loggers,
    uvicorn's, libraries' and Python warnings all go through the same
    processors (so the same redaction) and the same renderer (JSON lines with
    ``json``). ``cache`` binds each logger once (about 15 µs saved per call on
    a hot path); only for a process that never reconfigures, so the CLI sets
    it and tests do not."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*_shared_chain(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedPrintLoggerFactory(stream),
        cache_logger_on_first_use=cache,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_chain(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # uvicorn's own loggers keep no handlers of their own (serve passes
    # log_config=None) and propagate here; make sure of it.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "scaler.leader"):
        named = logging.getLogger(name)
        named.handlers[:] = []
        named.propagate = True
    # httpx logs every request at info; that is debug detail for us (the
    # forge client counts requests in metrics).
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING) if numeric > logging.DEBUG else numeric)
    logging.captureWarnings(True)
