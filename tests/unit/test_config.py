"""Configuration: every rule gives a message naming its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from scaler.config import load_config, parse_config
from scaler.durations import format_duration, parse_duration
from scaler.errors import ConfigError
from scaler.secrets import Secret, read_secret_file
from tests.conftest import base_config


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_example_config_is_valid() -> None:
    """The shipped local example validates."""
    config = load_config(Path(__file__).parents[2] / "examples/local/config.yaml")
    assert config.pools[0].name == "small"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("6h", 21600), ("1h30m", 5400), ("250ms", 0.25), (12, 12), ("2d", 172800)],
)
def test_durations(text: object, seconds: float) -> None:
    """Durations accept the usual units and combinations."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "m5", "-1s", "1.5", True, [1]])
def test_bad_durations(bad: object) -> None:
    """A malformed duration is refused with the value in the message."""
    with pytest.raises(ValueError, match="duration|negative"):
        parse_duration(bad)


def test_format_duration() -> None:
    """Durations print back in their shortest unit."""
    assert [format_duration(s) for s in (0.25, 30, 300, 7200)] == ["250ms", "30s", "5m", "2h"]


def test_max_below_min_idle_names_the_key() -> None:
    """max < min_idle reports the pool index, the key and both values."""
    data = base_config()
    data["pools"][0] |= {"min_idle": 3, "max": 1}
    assert problems(data) == ["pools[0].max: must be >= min_idle (got 1 < 3)"]


def test_all_errors_reported_at_once() -> None:
    """Three independent mistakes give three lines."""
    data = base_config()
    data["forges"][0]["url"] = "ftp://nope"
    data["providers"][0]["bogus"] = 1
    data["pools"][0]["idle_timeout"] = "soon"
    got = problems(data)
    assert len(got) == 3
    assert any(p.startswith("forges[0].url: must be an http(s) URL") for p in got)
    assert "providers[0].bogus: unknown key" in got
    assert any(p.startswith("pools[0].idle_timeout: expected a duration") for p in got)


def test_inline_secret_rejected() -> None:
    """A token written inline is refused and never echoed."""
    data = base_config()
    data["forges"][0]["token"] = "ghp_supersecretvalue"
    got = problems(data)
    assert got[0].startswith("forges[0].token: secrets are never written inline")
    assert "ghp_supersecretvalue" not in "\n".join(got)


def test_webhook_secret_required() -> None:
    """A forge without a webhook secret is refused."""
    data = base_config()
    del data["forges"][0]["webhook_secret_envs"]
    assert any("webhook secret is required" in p for p in problems(data))


def test_unknown_references() -> None:
    """A pool naming a missing forge or provider says which names exist."""
    data = base_config()
    data["pools"][0] |= {"forge": "nope", "provider": "gone"}
    got = problems(data)
    assert "pools[0].forge: no forge named 'nope' (have: fake)" in got
    assert "pools[0].provider: no provider named 'gone' (have: mem)" in got


def test_duplicate_names() -> None:
    """Two pools with one name are refused."""
    data = base_config()
    data["pools"].append(dict(data["pools"][0]))
    assert "pools[1].name: duplicate name 'small'" in problems(data)


@pytest.mark.parametrize("repo", ["acme", "a/b/c", "acme /x"])
def test_bad_allow_list(repo: str) -> None:
    """Repository patterns must be owner/repo, owner/* or *."""
    data = base_config()
    data["pools"][0]["repositories"] = [repo]
    assert any(p.startswith("pools[0].repositories:") for p in problems(data))


def test_scope_needs_name() -> None:
    """An organisation scope without a name is refused; instance scope takes none."""
    data = base_config()
    data["forges"][0]["scope"] = {"kind": "organization"}
    assert any("organization scope needs a name" in p for p in problems(data))
    data["forges"][0]["scope"] = {"kind": "instance", "name": "x"}
    assert any("instance scope takes no name" in p for p in problems(data))


def test_not_a_mapping() -> None:
    """A YAML document that is not a mapping is refused."""
    assert problems(["a"])[0].startswith("(top level): expected a mapping")


def test_malformed_yaml(tmp_path: Path) -> None:
    """Broken YAML names the file, line and column."""
    f = tmp_path / "c.yaml"
    f.write_text("forges: [\n  - a: b\n  c")
    with pytest.raises(ConfigError) as info:
        load_config(f)
    assert str(f) in info.value.problems[0] and "line" in info.value.problems[0]


def test_missing_config_file(tmp_path: Path) -> None:
    """A missing config file is named."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_config_is_frozen() -> None:
    """Validated config objects cannot be changed."""
    config = parse_config(base_config())
    with pytest.raises(Exception, match="frozen"):
        config.pools[0].max = 99  # type: ignore[misc]


def test_secret_never_prints(tmp_path: Path) -> None:
    """A Secret's str and repr hide the value; errors name the file only."""
    f = tmp_path / "token"
    f.write_text("s3cr3t-value\n")
    secret = read_secret_file(f)
    assert secret.reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret) and "s3cr3t" not in f"{secret}"
    with pytest.raises(ValueError, match=r"secret file .*missing does not exist"):
        read_secret_file(tmp_path / "missing")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        read_secret_file(tmp_path / "empty")
    assert Secret("abcdefg") == Secret("abcdefg")


_DURATION_KEYS = [
    ("timing", None, "reconcile_interval"),
    ("timing", None, "resync_interval"),
    ("timing", None, "collect_interval"),
    ("timing", None, "tombstone_ttl"),
    ("limits", None, "backoff_initial"),
    ("limits", None, "backoff_max"),
    ("forges", 0, "request_timeout"),
    ("forges", 0, "poll_interval"),
    ("providers", 0, "create_timeout"),
    ("providers", 0, "delete_timeout"),
    ("pools", 0, "boot_timeout"),
    ("pools", 0, "idle_timeout"),
    ("pools", 0, "max_lifetime"),
    ("leader_election", None, "lease_duration"),
]


@pytest.mark.parametrize(("section", "index", "key"), _DURATION_KEYS)
@pytest.mark.parametrize("zero", ["0s", 0, "0ms", "0m"])
def test_zero_interval_or_timeout_names_the_key(section: str, index: int | None, key: str, zero: object) -> None:
    """Every interval and timeout must be > 0; the error names its key path."""
    data = base_config()
    if index is None:
        data.setdefault(section, {})[key] = zero
        where = f"{section}.{key}"
    else:
        data[section][index][key] = zero
        where = f"{section}[{index}].{key}"
    assert problems(data) == [f"{where}: must be greater than 0 (every interval and timeout is)"]


def test_pools_whose_names_share_a_stem_are_refused() -> None:
    """A pool named like another's truncated-and-hashed name stem is a config error naming both."""
    from scaler.naming import stem

    controller, long_pool = "c" * 32, "p" * 32
    hashed = stem(controller, long_pool)
    twin = hashed[len(controller) + 1 :]  # a legal pool name whose stem is that very text
    assert stem(controller, twin) == hashed
    data = base_config(controller_id=controller)
    data["pools"] = [dict(data["pools"][0], name=long_pool), dict(data["pools"][0], name=twin)]
    assert problems(data) == [f"pools: pools {long_pool!r} and {twin!r} share the name stem {hashed!r}; rename one"]
    data["pools"][1]["name"] = "p" * 31 + "q"  # another long name: its own hash
    assert parse_config(data).pools[1].name == "p" * 31 + "q"
