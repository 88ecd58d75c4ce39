"""Log redaction: no secret reaches a log line, whatever the call site does."""

from __future__ import annotations

import io
import json
import logging

import structlog

from scaler import logging as slog
from scaler.secrets import Secret


def capture() -> io.StringIO:
    buf = io.StringIO()
    slog.configure("debug", "json", stream=buf)
    return buf


def test_known_secret_values_masked_anywhere() -> None:
    """A registered secret is masked in messages, fields and nested values."""
    buf = capture()
    secret = Secret("canary-9f8e7d6c5b")
    log = structlog.get_logger("t")
    log.info(f"token is {secret.reveal()}", detail={"nested": [secret.reveal()]}, err=f"x{secret.reveal()}y")
    line = buf.getvalue()
    assert "canary-9f8e7d6c5b" not in line and "[REDACTED]" in line
    json.loads(line)


def test_secret_named_keys_masked() -> None:
    """Fields named like credentials are masked even when unregistered."""
    buf = capture()
    structlog.get_logger("t").info("x", token="abc", authorization="Bearer zzzzzzzzzzzz", password="p")
    doc = json.loads(buf.getvalue())
    assert doc["token"] == doc["authorization"] == doc["password"] == "[REDACTED]"


def test_secret_objects_and_patterns_masked() -> None:
    """Secret objects and token-shaped strings are masked."""
    buf = capture()
    structlog.get_logger("t").info("x", value=Secret("another-secret-1"), text="used ghp_" + "a" * 36)
    doc = json.loads(buf.getvalue())
    assert doc["value"] == "[REDACTED]" and "ghp_" not in doc["text"]


def test_stdlib_logging_redacted() -> None:
    """Library logs through stdlib logging are redacted too."""
    buf = capture()
    Secret("stdlib-canary-123456")
    logging.getLogger("httpx").warning("request with stdlib-canary-123456")
    assert "stdlib-canary-123456" not in buf.getvalue()


def test_exception_text_redacted() -> None:
    """An exception message carrying a secret is masked in the log."""
    buf = capture()
    secret = Secret("exc-canary-abcdef")
    try:
        raise RuntimeError(f"failed with {secret.reveal()}")
    except RuntimeError:
        structlog.get_logger("t").exception("boom")
    assert "exc-canary-abcdef" not in buf.getvalue()


async def test_credentials_forgotten_after_teardown() -> None:
    """A runner's credential stops being tracked once its instance is gone."""
    from scaler.secrets import known_secret_values
    from tests.conftest import make_harness

    h = make_harness()
    await h.scaler.rebuild()
    job = h.queue()
    await h.scaler.settle()
    name = h.instance_for(job)
    runner = h.forge.runner_by_name(name)
    assert runner is not None and runner.token.reveal() in known_secret_values()
    h.run_job(job, name)
    await h.scaler.settle()
    assert runner.token.reveal() not in known_secret_values()


def test_length_bound_scan_finds_every_secret_it_must() -> None:
    """Texts shorter than the shortest secret skip the scan; every longer text is still searched, after forgets too."""
    from scaler.secrets import forget_secret_value, register_secret_value, secrets_in

    long_one, short_one = "L" * 40 + "-long-secret", "short-secret-7"
    register_secret_value(long_one)
    register_secret_value(short_one)
    try:
        assert secrets_in(f"x{short_one}y") == [short_one]
        assert secrets_in(f"a {long_one} and {short_one}") == [long_one, short_one]
        forget_secret_value(short_one)
        forget_secret_value(short_one)  # twice: the count of its length must not go wrong
        assert secrets_in(f"x{short_one}y") == []
        assert secrets_in(f"[{long_one}]") == [long_one]
        register_secret_value(short_one)
        assert secrets_in(short_one) == [short_one]
    finally:
        forget_secret_value(long_one)
        forget_secret_value(short_one)
