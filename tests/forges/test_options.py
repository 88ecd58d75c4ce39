"""``forges[].options`` are typed per forge type: unknown keys and inline
secrets are configuration errors named by their key path; the adapters get
validated values."""

from __future__ import annotations

from typing import Any

import pytest

from scaler.config import parse_config
from scaler.errors import ConfigError
from scaler.forges.options import FakeOptions, ForgejoOptions, GiteaOptions, GitHubOptions
from tests.conftest import base_config


def _with(kind: str, options: Any, **forge: Any) -> dict[str, Any]:
    data = base_config()
    data["forges"][0].update({"type": kind, "options": options, "token_env": "TOK", **forge})
    return data


def _problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    return err.value.problems


@pytest.mark.parametrize(("kind", "model"), [("gitea", GiteaOptions), ("forgejo", ForgejoOptions),
                                             ("github", GitHubOptions), ("fake", FakeOptions)])
def test_each_type_gets_its_model(kind: str, model: type) -> None:
    config = parse_config(_with(kind, {"runner_image": "img:1"}))
    assert type(config.forges[0].options) is model and config.forges[0].options.runner_image == "img:1"


def test_unknown_key_names_its_path() -> None:
    assert "forges[0].options.runner_imagee: unknown key" in _problems(_with("gitea", {"runner_imagee": "x"}))


def test_a_key_of_another_forge_type_is_unknown() -> None:
    problems = _problems(_with("gitea", {"rate_limit_reserve": 10, "one_job_wait": False}))
    assert "forges[0].options.rate_limit_reserve: unknown key" in problems
    assert "forges[0].options.one_job_wait: unknown key" in problems


@pytest.mark.parametrize("key", ["cache_secret", "token", "runner_token", "secret", "password", "private_key"])
def test_inline_secrets_are_refused(key: str) -> None:
    problems = _problems(_with("gitea", {key: "s3cret-value"}))
    assert any(p.startswith(f"forges[0].options.{key}: secrets are never written inline") for p in problems), problems
    assert not any("s3cret-value" in p for p in problems)  # the value is never echoed


def test_every_problem_at_once() -> None:
    problems = _problems(_with("forgejo", {"runner_imagee": "x", "cache_secret": "y", "runner_dir": "relative",
                                           "cache_server": "ftp://x", "one_job_wait": "perhaps"}))
    for key in ("runner_imagee", "cache_secret", "runner_dir", "cache_server", "one_job_wait"):
        assert any(p.startswith(f"forges[0].options.{key}:") for p in problems), (key, problems)


def test_values_are_checked() -> None:
    problems = _problems(_with("github", {"rate_limit_reserve": -1, "runner_group_id": 0,
                                          "poll_repositories": ["acme/..", "ok/repo"]}))
    assert any(p.startswith("forges[0].options.rate_limit_reserve:") for p in problems)
    assert any(p.startswith("forges[0].options.runner_group_id:") for p in problems)
    assert any(p.startswith("forges[0].options.poll_repositories:") and "acme/.." in p for p in problems)


def test_options_must_be_a_mapping() -> None:
    assert "forges[0].options: must be a mapping of keys (got list)" in _problems(_with("gitea", ["x"]))


def test_cache_secret_file_is_checked_for_permissions(tmp_path: Any) -> None:
    secret = tmp_path / "cache"
    secret.write_text("x")
    config = parse_config(_with("gitea", {"cache_secret_file": str(secret)}))
    assert secret in config.forges[0].secret_files()
