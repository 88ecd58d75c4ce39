"""1. Webhook ingestion: signed deliveries/s and latency through uvicorn on one core.

The server runs pinned to CPU 0, the load generator to CPU 1 (``taskset``).
Per server and round: (closed loop, 32 connections: maximum rate; then open
loop at the 2,000/s target: latency from the scheduled send time). Traffic is
each job's queued, in_progress and completed deliveries in turn, ~6-7 KB each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

from benchmarks.common import free_port, median, pinned, python_module, run_json

TARGET_RATE = 2000.0
TARGET_P99_MS = 10.0


@contextlib.contextmanager
def server(*args: str, cpu: int | None = 0) -> Iterator[int]:
    port = free_port()
    cmd = pinned(python_module("benchmarks.server", "--port", str(port), *args), cpu)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "READY" not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        yield port
    finally:
        proc.terminate()  # our own child, by PID
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def loadgen(port: int, *args: str, cpu: int | None = 1) -> dict[str, Any]:
    result: dict[str, Any] = run_json(pinned(python_module("benchmarks.loadgen", "--port", str(port), *args), cpu))
    return result


SERVERS = {
    "bare": ("bare Starlette 202 (ceiling)", ["--mode", "bare"], "github"),
    "github": ("runner-scaler, GitHub headers", ["--mode", "scaler", "--scheme", "github"], "github"),
    "gitea": ("runner-scaler, Gitea headers", ["--mode", "scaler", "--scheme", "gitea"], "gitea"),
    "forgejo": ("runner-scaler, Forgejo headers", ["--mode", "scaler", "--scheme", "forgejo"], "forgejo"),
}


def run(rounds: int = 3, duration: float = 2.0) -> dict[str, Any]:
    """All four servers stay up; each round visits them in turn, so the
    ceiling and the scaler share the machine's noise."""
    closed: dict[str, list[dict[str, Any]]] = {k: [] for k in SERVERS}
    opened: dict[str, list[dict[str, Any]]] = {k: [] for k in SERVERS}
    with contextlib.ExitStack() as stack:
        ports = {k: stack.enter_context(server(*args)) for k, (_, args, _) in SERVERS.items()}
        for k, (_, _, scheme) in SERVERS.items():  # warm up
            loadgen(ports[k], "--mode", "closed", "--duration", "0.5", "--scheme", scheme, "--base", "100000")
        for r in range(rounds):
            for k, (_, _, scheme) in SERVERS.items():
                base = 1_000_000 * (r + 1)
                closed[k].append(
                    loadgen(
                        ports[k],
                        "--mode",
                        "closed",
                        "--duration",
                        str(duration),
                        "--conns",
                        "32",
                        "--scheme",
                        scheme,
                        "--base",
                        str(base),
                    )
                )
                opened[k].append(
                    loadgen(
                        ports[k],
                        "--mode",
                        "open",
                        "--rate",
                        str(TARGET_RATE),
                        "--duration",
                        str(duration),
                        "--conns",
                        "64",
                        "--scheme",
                        scheme,
                        "--base",
                        str(base + 500_000),
                    )
                )
    return {
        k: {
            "label": SERVERS[k][0],
            "max_rate": median([c["rate"] for c in closed[k]]),
            "max_rate_runs": [round(c["rate"]) for c in closed[k]],
            "at_target_p50_ms": median([o["latency_ms"]["p50"] for o in opened[k]]),
            "at_target_p99_ms": median([o["latency_ms"]["p99"] for o in opened[k]]),
            "at_target_p99_runs": [round(o["latency_ms"]["p99"], 2) for o in opened[k]],
            "at_target_achieved": median([o["rate"] for o in opened[k]]),
            "saturated_p50_ms": median([c["latency_ms"]["p50"] for c in closed[k]]),
            "saturated_p99_ms": median([c["latency_ms"]["p99"] for c in closed[k]]),
            "statuses": [c["statuses"] for c in closed[k]] + [o["statuses"] for o in opened[k]],
        }
        for k in SERVERS
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0)
    args = ap.parse_args()
    print(json.dumps(run(args.rounds, args.duration)))


if __name__ == "__main__":
    main()
