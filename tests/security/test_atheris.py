"""The atheris harness (``fuzz_atheris.py``) runs a fixed-seed campaign without a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HARNESS = Path(__file__).with_name("fuzz_atheris.py")
RUNS = 200_000


def test_atheris_campaign_finds_no_crash(tmp_path: Path) -> None:
    """200,000 coverage-guided inputs from well-formed seeds end in a Delivery or a 4xx, never anything else."""
    repo = HARNESS.parents[2]
    proc = subprocess.run(
        [sys.executable, str(HARNESS), f"-runs={RUNS}", "-seed=1", "-max_total_time=240", str(tmp_path / "corpus")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=repo,
        # the harness imports this checkout's scaler, installed or not
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))},
    )
    tail = "\n".join(proc.stderr.splitlines()[-30:])
    assert proc.returncode == 0, tail
    assert f"Done {RUNS} runs" in proc.stderr, tail
    # the seeds reached the parsers: coverage well past JSON rejection alone
    assert len(list((tmp_path / "corpus").iterdir())) > 20, tail
