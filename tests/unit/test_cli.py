"""The command line: check, status, serve's argument handling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scaler.cli import main, render_status
from tests.conftest import base_config


def write(tmp_path: Path, data: object) -> Path:
    f = tmp_path / "config.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_check_reports_three_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three deliberate mistakes are all printed with key paths; exit non-zero."""
    data = base_config()
    data["pools"][0] |= {"max": 1, "min_idle": 3}
    data["forges"][0]["poll_interval"] = "often"
    data["limits"] = {"max_instance": 5}
    rc = main(["check", "--config", str(write(tmp_path, data))])
    out = capsys.readouterr().out
    assert rc == 1
    assert "pools[0].max: must be >= min_idle (got 1 < 3)" in out
    assert "forges[0].poll_interval: expected a duration" in out
    assert "limits.max_instance: unknown key" in out


def test_check_ok_probes_forge_and_provider(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid config passes and each forge and provider is probed."""
    rc = main(["check", "--config", str(write(tmp_path, base_config()))])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "forge fake" in out and "provider mem" in out


def test_check_offline_probes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--offline validates only."""
    rc = main(["check", "--offline", "--config", str(write(tmp_path, base_config()))])
    out = capsys.readouterr().out
    assert rc == 0 and "forge fake" not in out


def test_check_unknown_provider_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown provider type names the installed ones."""
    data = base_config()
    data["providers"][0]["type"] = "nomad"
    assert main(["check", "--offline", "--config", str(write(tmp_path, data))]) == 1
    out = capsys.readouterr().out
    assert "providers[0].type: no provider type 'nomad'" in out and "memory" in out


def test_check_provider_options_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Provider options are checked by the provider's own model."""
    data = base_config()
    data["providers"][0]["options"] = {"create_latency": -1, "colour": "red"}
    assert main(["check", "--offline", "--config", str(write(tmp_path, data))]) == 1
    out = capsys.readouterr().out
    assert "providers[0].options.create_latency" in out and "providers[0].options.colour: unknown key" in out


def test_check_missing_secret_and_loose_permissions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing secret file is an error naming it; a world-readable one a warning."""
    data = base_config()
    loose = tmp_path / "secret"
    loose.write_text("a-webhook-secret")
    loose.chmod(0o644)
    data["forges"][0]["webhook_secret_files"] = [str(loose), str(tmp_path / "absent")]
    del data["forges"][0]["webhook_secret_envs"]
    assert main(["check", "--config", str(write(tmp_path, data))]) == 1
    out = capsys.readouterr().out
    assert f"secret file {tmp_path / 'absent'} does not exist" in out
    assert "readable by group or others" in out
    assert "a-webhook-secret" not in out


def test_render_status_table() -> None:
    """status prints one row per pool with counts by state."""
    text = render_status(
        [
            {
                "name": "small",
                "queued": 3,
                "held_back": 1,
                "in_progress": 1,
                "instances": {"idle": 2, "busy": 1},
                "max": 5,
            }
        ]
    )
    header, row = text.splitlines()
    assert header.split()[:5] == ["POOL", "QUEUED", "HELD", "RUNNING", "PENDING"]
    assert row.split() == ["small", "3", "1", "1", "0", "0", "0", "2", "1", "0", "0", "0", "5"]


def test_status_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    """status against nothing says what it could not read."""
    assert main(["status", "--url", "http://127.0.0.1:9"]) == 1
    assert "cannot read http://127.0.0.1:9/api/v1/pools" in capsys.readouterr().err


def test_serve_and_status_end_to_end(tmp_path: Path) -> None:
    """serve starts on the example config, answers /healthz, status reads it, and SIGTERM ends it with 0 in time."""
    import socket
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RUNNER_SCALER_WEBHOOK_SECRET": "local-secret-value"}
    root = Path(__file__).parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scaler.cli",
            "serve",
            "--config",
            str(root / "examples/local/config.yaml"),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve did not come up"
            time.sleep(0.1)
        out = subprocess.run(
            [sys.executable, "-m", "scaler.cli", "status", "--url", f"http://127.0.0.1:{port}", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(out)[0]["name"] == "small"
    finally:
        stopping = time.monotonic()
        proc.terminate()  # SIGTERM, as Kubernetes and systemd stop it
        logs = proc.communicate(timeout=25)[0].decode()
    assert proc.returncode == 0, logs[-2000:]  # a clean shutdown, not death by the signal (-15)
    assert time.monotonic() - stopping < 20
    assert "listening" in logs and "stopped" in logs and "local-secret-value" not in logs


def test_serve_bad_config_exit_2(tmp_path: Path) -> None:
    """serve on an invalid config prints every problem and exits 2."""
    data = base_config()
    data["pools"][0]["max"] = -1
    proc = subprocess.run(
        [sys.executable, "-m", "scaler.cli", "serve", "--config", str(write(tmp_path, data))],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "pools[0].max" in proc.stderr


def test_group_read_is_accepted_only_for_our_own_group(tmp_path: Path) -> None:
    """A 0440 secret file of our own group (a Secret mounted with fsGroup) passes; another group's or 0444 does not."""
    import os

    from scaler.secrets import readable_by_others

    f = tmp_path / "secret"
    f.write_text("x")
    f.chmod(0o440)
    os.chown(f, -1, os.getegid())
    assert not readable_by_others(f)
    other = next(g for g in (65534, 65532, 12345) if g != os.getegid())
    os.chown(f, -1, other)
    assert readable_by_others(f)
    os.chown(f, -1, os.getegid())
    f.chmod(0o444)
    assert readable_by_others(f)
    f.chmod(0o400)
    assert not readable_by_others(f)
