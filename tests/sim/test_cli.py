"""``runner-scaler simulate``: table, JSON, PNG, --compare, and bad input named; ``status`` says why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scaler.cli import main, render_status
from scaler.trace.format import write_trace
from tests.sim.conftest import BITCOIN

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "simulate"


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """Four days of the bitcoin trace."""
    from scaler.trace.format import read_trace

    jobs = read_trace(BITCOIN)
    out = tmp_path / "t.csv"
    with out.open("w") as fh:
        write_trace([j for j in jobs if j.queued_at < jobs[0].queued_at + 4 * 86400], fh)
    return out


def test_table_json_and_plot(trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One config: a table on the terminal, the JSON keys the issue names, a PNG."""
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["simulate", "--config", str(EXAMPLES / "fixed.yaml"), "--trace", str(trace), "--warmup", "1d",
                 "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "POOL" in text and "linux" in text and "(all)" in text and "replayed 2.976 days" in text
    rep = json.loads(out.read_text())
    keys = {"jobs", "wait_p50_s", "wait_p95_s", "wait_p99_s", "idle_instance_minutes", "busy_instance_minutes",
            "instances_created"}
    assert keys <= set(rep["overall"]) and set(rep["pools"]) == {"linux", "macos", "windows"}
    assert all(keys <= set(p) for p in rep["pools"].values())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_compare(trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--compare replays both configs on the same trace, side by side."""
    out = tmp_path / "c.json"
    assert main(["simulate", "--compare", str(EXAMPLES / "min-idle-0.yaml"), str(EXAMPLES / "warm.yaml"),
                 "--trace", str(trace), "--provider-start-dist", "median=40s,p95=90s", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "min-idle-0" in text and "warm" in text
    both = json.loads(out.read_text())["compare"]
    assert set(both) == {"min-idle-0", "warm"}
    assert both["min-idle-0"]["overall"]["jobs"] == both["warm"]["overall"]["jobs"]
    assert both["min-idle-0"]["overall"]["idle_instance_minutes"] == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--provider-start", "soon"], "--provider-start"),
        (["--provider-start-dist", "median=1m"], "both median= and p95="),
        (["--warmup", "30d"], "leaves nothing"),
        (["--from", "2025-09-10", "--to", "2025-09-09"], "--to must be after --from"),
        (["--from", "yesterday"], "--from"),
        (["--forge", "nope"], "no forge named"),
    ],
)
def test_bad_arguments(trace: Path, args: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad argument exits 2 and names what was wrong."""
    assert main(["simulate", "--config", str(EXAMPLES / "fixed.yaml"), "--trace", str(trace), *args]) == 2
    assert needle in capsys.readouterr().err


def test_bad_trace_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken trace or config is refused with its problems, line by line."""
    bad = tmp_path / "bad.csv"
    bad.write_text("job_id,repository,labels,queued_at,started_at,completed_at,status,name\n1,x,linux,1,2,3,ok,\n")
    assert main(["simulate", "--config", str(EXAMPLES / "fixed.yaml"), "--trace", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv:2: repository" in err
    conf = tmp_path / "c.yaml"
    conf.write_text("pools: []\n")
    assert main(["simulate", "--config", str(conf), "--trace", str(BITCOIN)]) == 2
    assert "config" in capsys.readouterr().err


def test_same_report_in_fresh_processes(trace: Path, tmp_path: Path) -> None:
    """Two processes with different hash seeds write the same report."""
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"{seed}.json"
        subprocess.run([sys.executable, "-m", "scaler.cli", "simulate", "--config", str(EXAMPLES / "warm.yaml"),
                        "--trace", str(trace), "--json", str(out)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        rep = json.loads(out.read_text())
        for k in ("replay_seconds", "peak_rss_mb"):
            rep["replay"].pop(k)
        outs.append(rep)
    assert outs[0] == outs[1]


def test_status_says_why() -> None:
    """`status` prints each warm pool's target and reason under the table."""
    pool = {"name": "linux", "queued": 0, "in_progress": 1, "instances": {"idle": 3}, "max": 9,
            "warm": {"target_idle": 3, "forecast": 0.4, "reason": "forecast 1.2 runs/h"}}
    text = render_status([pool, {**pool, "name": "other", "warm": None}])
    assert "warm linux: holds 3 idle: forecast 1.2 runs/h" in text and "warm other" not in text
