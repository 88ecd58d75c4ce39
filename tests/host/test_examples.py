"""The host provider's examples: the config passes the loader and the trust
rule, the scaler's unit passes ``systemd-analyze verify`` and is hardened, the
NixOS module carries the same set-up."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from scaler.config import parse_config
from scaler.plugins import validate_provider_options
from tests.helm.test_examples import _unit, verify_example_unit

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONFIG = EXAMPLES / "host" / "config.yaml"
UNIT = EXAMPLES / "host" / "runner-scaler.service"
NIX = EXAMPLES / "nixos" / "module.nix"


def test_host_config_example_is_valid_and_trusted_only() -> None:
    """The example validates, its pool names exact repositories, and it says what it assumes."""
    text = CONFIG.read_text(encoding="utf-8")
    assert "Assumes:" in text
    data = yaml.safe_load(text)
    config = parse_config(data)
    assert validate_provider_options(config) == []
    pool = config.pools[0]
    assert config.provider(pool.provider).type == "host"
    assert pool.repositories and all("*" not in r for r in pool.repositories)
    assert config.server.host == "127.0.0.1"
    data["pools"][0]["repositories"] = ["acme/*"]
    assert validate_provider_options(parse_config(data))[0].startswith("pools[0].repositories[0]: ")


def test_host_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The scaler's unit for the host provider parses cleanly."""
    verify_example_unit(UNIT, tmp_path)


def test_host_unit_is_root_with_almost_nothing_else() -> None:
    """Root for systemd-run, but read-only system, two capabilities, no new privileges, filtered syscalls."""
    unit = _unit(UNIT)
    assert unit["User"] == ["root"] and "DynamicUser" not in unit
    assert unit["CapabilityBoundingSet"] == ["CAP_DAC_OVERRIDE CAP_FOWNER"]
    for key in ("ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges", "RestrictSUIDSGID",
                "ProtectKernelModules", "ProtectKernelTunables", "ProtectControlGroups", "RestrictNamespaces"):
        assert unit[key] == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"] and unit["StateDirectory"] == ["runner-scaler"]
    assert unit["SystemCallFilter"][1].startswith("~@privileged")
    creds = {c.split(":", 1)[0] for c in unit["LoadCredential"]}
    config = yaml.safe_load(CONFIG.read_text())
    used = {Path(p).name for f in config["forges"] for p in [f["token_file"], *f["webhook_secret_files"]]}
    assert creds == used


def test_nixos_module_has_a_host_provider_setup() -> None:
    """hostProvider.enable: root with two capabilities, systemd-run on PATH, a trusted-repository pool example."""
    text = NIX.read_text(encoding="utf-8")
    for pair in ("{}", "[]", "()"):
        assert text.count(pair[0]) == text.count(pair[1]), pair
    assert "hostProvider.enable = lib.mkEnableOption" in text
    block = text[text.index("(lib.mkIf cfg.hostProvider.enable") :]
    assert 'User = "root";' in block and "DynamicUser = lib.mkForce false;" in block
    assert 'CapabilityBoundingSet = lib.mkForce [ "CAP_DAC_OVERRIDE" "CAP_FOWNER" ];' in block
    assert "path = [ config.systemd.package ];" in block
    assert re.search(r'repositories = \[ "my-org/infra" "my-org/website" \];', text)
    assert 'type = "host"' in text
