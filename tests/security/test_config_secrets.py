"""Secrets come from files or the environment only; ``check`` warns about
secret files others can read; error messages never echo a secret."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.cli import _secret_findings, cmd_check
from scaler.config import parse_config
from scaler.errors import ConfigError
from tests.scenarios.sim import scenario_config

INLINE = "inline-secret-value-5e2b77"


def _with(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(scenario_config())
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[parts[-1]] = value
    return data


@pytest.mark.parametrize(
    "path",
    [
        "forges.0.token",
        "forges.0.secret",
        "forges.0.webhook_secret",
        "forges.0.password",
        "forges.0.options.token",
        "forges.0.options.password",
        "providers.0.options.secret",
        "providers.0.options.private_key",
        "pools.0.provider_options.password",
        "forges.0.webhook_secrets",
    ],
)
def test_inline_secret_rejected(path: str) -> None:
    value: Any = [INLINE] if path.endswith("webhook_secrets") else INLINE
    with pytest.raises(ConfigError) as err:
        parse_config(_with(path, value))
    text = str(err.value)
    assert "inline" in text and path.split(".")[-1] in text
    assert INLINE not in text


def test_secret_from_file_and_env_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "hook"
    secret.write_text(INLINE)
    secret.chmod(0o600)
    data = _with("forges.0.webhook_secret_files", [str(secret)])
    config = parse_config(data)
    assert config.forges[0].webhook_secrets()[0].reveal() == INLINE
    assert INLINE not in repr(config) and INLINE not in str(config.forges[0].webhook_secrets())


def test_unknown_key_error_does_not_echo_value() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with("forges.0.api_key", INLINE))
    assert INLINE not in str(err.value)


@pytest.mark.parametrize(
    "mode,other_group,warned",
    [
        (0o600, False, False),
        (0o400, False, False),
        # Group-read by our own group is how a Secret mounted with fsGroup looks.
        (0o440, False, False),
        (0o640, True, True),
        (0o644, False, True),
        (0o604, False, True),
    ],
)
def test_check_warns_about_readable_secret_file(tmp_path: Path, mode: int, other_group: bool, warned: bool) -> None:
    import os

    secret = tmp_path / "hook"
    secret.write_text(INLINE)
    secret.chmod(mode)
    os.chown(secret, -1, next(g for g in (65534, 12345) if g != os.getegid()) if other_group else os.getegid())
    token = tmp_path / "token"
    token.write_text("tok-" + INLINE)
    token.chmod(0o600)
    data = _with("forges.0.webhook_secret_files", [str(secret)])
    data["forges"][0]["token_file"] = str(token)
    del data["forges"][0]["token_env"]
    findings = _secret_findings(parse_config(data))
    warnings = [f for f in findings if f.level == "warning" and str(secret) in f.message]
    assert bool(warnings) is warned, findings
    assert all(INLINE not in str(f) for f in findings)


def test_check_cli_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``runner-scaler check --offline`` prints the warning and never the secret."""
    secret = tmp_path / "hook"
    secret.write_text(INLINE)
    secret.chmod(0o644)
    data = _with("forges.0.webhook_secret_files", [str(secret)])
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    code = cmd_check(argparse.Namespace(config=str(cfg), offline=True))
    out = capsys.readouterr().out
    assert code == 0 and "readable by group or others" in out and INLINE not in out
    cfg.write_text(yaml.safe_dump(_with("forges.0.token", INLINE)))
    code = cmd_check(argparse.Namespace(config=str(cfg), offline=True))
    out = capsys.readouterr().out
    assert code == 1 and "inline" in out and INLINE not in out
