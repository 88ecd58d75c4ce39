"""Trusted repositories only: the config loader, ``check`` and ``build_providers``
refuse a host pool without an explicit allow-list, naming the key (no bwrap needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaler.cli import main
from scaler.config import parse_config
from scaler.errors import ConfigError
from scaler.plugins import build_providers, validate_provider_options
from tests.conftest import base_config


def host_config(pool: dict[str, Any] | None = None, forge: dict[str, Any] | None = None) -> dict[str, Any]:
    data = base_config()
    data["providers"].append({"name": "host", "type": "host", "options": {"mode": "bubblewrap"}})
    data["pools"].append({
        "name": "metal",
        "forge": "fake",
        "provider": "host",
        "labels": ["native:host"],
        "repositories": ["acme/app", "acme/infra"],
        **(pool or {}),
    })
    data["forges"][0].update(forge or {})
    return data


def problems(data: dict[str, Any]) -> list[str]:
    return validate_provider_options(parse_config(data))


def test_an_explicit_allow_list_passes() -> None:
    """Exact owner/repo entries, a host label and per-runner credentials: no problem."""
    assert problems(host_config()) == []


def test_the_default_star_is_refused_naming_the_key() -> None:
    """Omitting repositories means '*', which a host pool may not have."""
    data = host_config()
    del data["pools"][1]["repositories"]
    found = problems(data)
    assert len(found) == 1 and found[0].startswith("pools[1].repositories[0]: '*' (also the default"), found


@pytest.mark.parametrize(
    ("repos", "key", "says"),
    [
        (["acme/app", "*"], "repositories[1]", "admits every repository"),
        (["acme/*"], "repositories[0]", "do not exist yet"),
        (["acme/ci-*"], "repositories[0]", "do not exist yet"),
        (["*/app"], "repositories[0]", "pattern in the owner"),
        (["ac?e/app"], "repositories[0]", "pattern in the owner"),
    ],
)
def test_patterns_are_refused(repos: list[str], key: str, says: str) -> None:
    """'*', owner/* and patterns in the owner each name their entry and why."""
    found = problems(host_config({"repositories": repos}))
    assert len(found) == 1 and found[0].startswith(f"pools[1].{key}: ") and says in found[0], found


def test_owner_wildcards_only_by_explicit_choice() -> None:
    """owner/* passes with allow_owner_wildcards; '*' and owner patterns never do."""
    ok = {"repositories": ["acme/*"], "provider_options": {"allow_owner_wildcards": True}}
    assert problems(host_config(ok)) == []
    never = {"repositories": ["*", "*/x"], "provider_options": {"allow_owner_wildcards": True}}
    assert len(problems(host_config(never))) == 2


def test_other_providers_are_not_affected() -> None:
    """The rule is the host provider's own: a memory pool keeps its '*'."""
    data = host_config()
    data["pools"][0]["repositories"] = ["*"]
    assert problems(data) == []


def test_container_labels_images_and_reusable_credentials_are_refused(tmp_path: Path) -> None:
    """A docker:// label, an image, a registration token or a visible forge secret file: each named."""
    token = tmp_path / "token"
    token.write_text("t")
    data = host_config(
        {"labels": ["native:host", "ubuntu:docker://node:20"], "image": "x"},
        {
            "type": "gitea",
            "insecure_pass_registration_token": True,
            "token_file": str(token),
            "options": {"cache_secret_file": "/c"},
        },
    )
    found = problems(data)
    keys = sorted(p.split(": ", 1)[0] for p in found)
    assert keys == [
        "pools[1].forge",
        "pools[1].forge",
        "pools[1].image",
        "pools[1].labels[1]",
        "pools[1].provider_options.inaccessible_paths",
        "pools[1].provider_options.inaccessible_paths",
    ], found
    assert any(str(token) in p for p in found) and any("registration token" in p for p in found)


def test_forge_secrets_in_hidden_paths_pass(tmp_path: Path) -> None:
    """A token file under /run/credentials (always hidden) or a listed directory is fine."""
    data = host_config({"provider_options": {"inaccessible_paths": [str(tmp_path)]}},
                       {"token_file": str(tmp_path / "token"), "webhook_secret_files": ["/run/credentials/x/hook"]})
    assert problems(data) == []


def test_check_and_serve_refuse_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check --offline` exits 1 and `serve` 2, each printing the key and the reason."""
    data = host_config({"repositories": ["acme/*"]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["check", "--offline", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "ERROR   config: pools[1].repositories[0]: 'acme/*' admits repositories of acme" in out
    # serve in its own process: it configures the process's logging for good
    serve = subprocess.run([sys.executable, "-m", "scaler.cli", "serve", "--config", str(path)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert serve.returncode == 2 and "pools[1].repositories[0]" in serve.stderr, serve.stderr


def test_build_providers_refuses_it_however_the_config_arrived() -> None:
    """Building the providers from a parsed config runs the same rule."""
    data = host_config()
    data["pools"][1]["repositories"] = ["*"]
    with pytest.raises(ConfigError) as info:
        build_providers(parse_config(data))
    assert info.value.problems[0].startswith("pools[1].repositories[0]: ")


def test_bad_provider_options_are_reported_by_their_key() -> None:
    """Option errors (and model-level ones) name their path once, without an empty segment."""
    found = problems(host_config({"provider_options": {"read_write_paths": ["/"], "workdir": "/proc/x"}}))
    assert found and all(p.startswith("pools[1].provider_options.") and ".:" not in p for p in found), found
    found = problems(host_config({"provider_options": {"workdir": "/usr/w"}}))
    assert found == ["pools[1].provider_options.workdir: /usr/w overlaps the bound host path /usr"], found
