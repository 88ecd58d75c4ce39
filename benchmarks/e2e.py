"""End-to-end benchmarks over real processes and sockets (``benchmarks/e2e_env.py``).

``python -m benchmarks.e2e storm --jobs 5000``: N jobs running (each runner
holds its job), then all complete within 1 s: time until no instance and no
forge runner is left, forge calls in flight (max, counted by the forge),
``/healthz`` and the read endpoints' latency during the storm, and SIGTERM
time with ``--sigterm-after S`` (then a restart must finish the work).

``python -m benchmarks.e2e sustained --duration 300``: jobs kept queued so
``--outstanding`` are open at once; life cycles (deletes) per minute after
the warm-up.

``python -m benchmarks.e2e burst --jobs 1000``: N queued at once:
accepted (the forge got its 202) → ``provider.create`` p50 / p99, and the
serve process's CPU per life cycle (``--profile``: where it goes, py-spy).

Each prints one JSON document on its last line. ``--kind`` picks the forge
(gitea, forgejo, github).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from benchmarks.common import pct, summary
from benchmarks.e2e_env import Env, Prober, settled
from scaler.provider import LABEL_JOB_ID


def _wait(cond: Any, timeout: float, every: float = 0.1) -> float | None:
    """Seconds until ``cond()`` held, or None at the timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(every)
    return None


def _leaks_and_duplicates(env: Env) -> dict[str, Any]:
    creates = Counter(r["name"] for r in env.launches() if r["op"] == "create")
    stats = env.forge_stats()
    return {
        "forge_runners_left": stats["runners_ours"],
        "instances_left": env.instances(),
        "duplicate_mints": stats["duplicate_mints"],
        "mints": stats["mints"],
        "duplicate_creates": sum(n - 1 for n in creates.values() if n > 1),
        "creates": sum(creates.values()),
    }


async def storm(args: argparse.Namespace) -> dict[str, Any]:
    n = args.jobs
    with Env(args.kind, pool_max=n + 100, hold=True, keep=args.keep) as env:
        cpu0 = env.cpu()
        env.queue(n)
        setup = await asyncio.to_thread(_wait, lambda: env.forge_stats()["jobs"].get("running", 0) >= n,
                                        args.timeout)
        result: dict[str, Any] = {"jobs": n, "kind": args.kind, "setup_s": setup, "setup_cpu_s": env.cpu() - cpu0}
        if setup is None:
            result["error"] = f"only {env.forge_stats()['jobs']} after {args.timeout}s"
            return result
        prober = Prober(env.port)
        prober.start()
        await asyncio.sleep(1.0)
        env.forge.post("/_harness/reset")
        spy = _py_spy(env, args.profile)
        cpu1, start = env.cpu(), time.monotonic()
        env.procs["sim"].send_signal(10)  # SIGUSR1: complete every job within --spread
        if args.sigterm_after is not None:
            await asyncio.sleep(args.sigterm_after)
            result["sigterm_s"] = env.sigterm_serve()
            result["cpu_s"] = None
            env.start_serve()
            prober.port = env.port
        done = await asyncio.to_thread(_wait, lambda: settled(env), args.timeout, 0.2)
        end = time.monotonic()
        await asyncio.sleep(0.5)
        await prober.stop()
        result["profile"] = _py_spy_report(spy, args.profile)
        sim = env.sim_status()
        stats = env.forge_stats()
        result.update(
            settled_s=None if done is None else end - start,
            completions_within_s=(sim["last_done"] - sim["first_done"]) if sim.get("last_done") else None,
            jobs_done=sim.get("done"),
            forge_calls_in_flight_max=env.metric("runner_scaler_forge_calls_in_flight_max"),
            forge_calls=stats["calls"],
            endpoints=prober.report(start, end),
            storm_cpu_s=env.cpu() - cpu1 if args.sigterm_after is None else None,
            **_leaks_and_duplicates(env),
        )
        if args.sigterm_after is None:
            result["sigterm_s"] = env.sigterm_serve()
        result["sigterm_exit_status"] = env.serve.returncode  # 0: a clean shutdown
        return result


async def sustained(args: argparse.Namespace) -> dict[str, Any]:
    with Env(args.kind, pool_max=args.outstanding * 2, job_time=args.job_time, keep=args.keep) as env:
        prober = Prober(env.port, every=0.05)
        prober.start()
        t0 = time.monotonic()
        cpu0 = None
        warm_end, end = t0 + args.warmup, t0 + args.warmup + args.duration
        while time.monotonic() < end:
            jobs = env.forge_stats()["jobs"]
            open_ = jobs.get("waiting", 0) + jobs.get("running", 0)
            if open_ < args.outstanding:
                env.queue(args.outstanding - open_)
            if cpu0 is None and time.monotonic() >= warm_end:
                cpu0 = env.cpu()
            await asyncio.sleep(0.2)
        cpu = env.cpu() - (cpu0 or 0.0)
        deletes = [r["at"] for r in env.launches() if r["op"] == "delete"]
        n = sum(1 for at in deletes if warm_end <= at < end)
        drained = await asyncio.to_thread(_wait, lambda: settled(env), 120, 0.5)
        await prober.stop()
        return {
            "kind": args.kind,
            "duration_s": args.duration,
            "outstanding": args.outstanding,
            "lifecycles": n,
            "per_min": n / args.duration * 60,
            "cpu_ms_per_lifecycle": cpu / max(n, 1) * 1000,
            "drained_s": drained,
            "endpoints": prober.report(warm_end, end),
            **_leaks_and_duplicates(env),
        }


async def burst(args: argparse.Namespace) -> dict[str, Any]:
    n = args.jobs
    with Env(args.kind, pool_max=n + 100, keep=args.keep) as env:
        spy = _py_spy(env, args.profile)
        cpu0, t0 = env.cpu(), time.monotonic()
        env.queue(n)
        done = await asyncio.to_thread(
            _wait, lambda: env.sim_status().get("done", 0) >= n and settled(env), args.timeout, 0.2
        )
        cpu = env.cpu() - cpu0
        profile = _py_spy_report(spy, args.profile)
        accepted = {int(k): v for k, v in env.forge.get("/_harness/accepted").json()["accepted"].items()}
        created: dict[int, float] = {}
        for r in env.launches():
            if r["op"] == "create" and LABEL_JOB_ID in r["labels"]:
                created.setdefault(int(r["labels"][LABEL_JOB_ID]), r["at"])
        lat = [(created[j] - a) * 1000 for j, a in accepted.items() if j in created]
        # Where the wait is: when the deliveries were answered, when the creates
        # came, and the latency by order of acceptance (a backlog grows along it).
        order = sorted((a, j) for j, a in accepted.items() if j in created)
        tenth = max(1, len(order) // 10)
        by_decile = [round((created[j] - a) * 1000) for a, j in order[tenth - 1 :: tenth]]
        return {
            "kind": args.kind,
            "jobs": n,
            "settled_s": done,
            "accepted_span_s": order[-1][0] - order[0][0] if order else None,
            "create_span_s": (max(created.values()) - min(created.values())) if created else None,
            "latency_ms_at_each_tenth_accepted": by_decile,
            "accepted_to_create_ms": summary(lat),
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "cpu_s": cpu,
            "cpu_ms_per_lifecycle": cpu / n * 1000,
            "elapsed_s": time.monotonic() - t0,
            "forge_calls_in_flight_max": env.metric("runner_scaler_forge_calls_in_flight_max"),
            "profile": profile,
            **_leaks_and_duplicates(env),
        }


def _py_spy(env: Env, out: str | None) -> subprocess.Popen[bytes] | None:
    if not out:
        return None
    exe = shutil.which("py-spy") or str(__import__("pathlib").Path(sys.executable).with_name("py-spy"))
    rate = os.environ.get("RS_PYSPY_RATE", "250")  # samples a second
    return subprocess.Popen([exe, "record", "--pid", str(env.serve.pid), "--rate", rate, "--format", "raw",
                             "--output", out, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _py_spy_report(spy: subprocess.Popen[bytes] | None, out: str | None) -> dict[str, Any] | None:
    if spy is None or out is None:
        return None
    spy.send_signal(2)
    spy.wait(30)
    from benchmarks.profile_report import summarise

    return summarise(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["storm", "sustained", "burst"])
    ap.add_argument("--kind", choices=["gitea", "forgejo", "github"], default="gitea")
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--timeout", type=float, default=240.0)
    ap.add_argument("--sigterm-after", type=float, default=None)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--outstanding", type=int, default=200)
    ap.add_argument("--job-time", type=float, default=0.0)
    ap.add_argument("--profile", help="py-spy raw output file of serve (burst; storm: the storm itself)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, launch log)")
    args = ap.parse_args()
    fn = {"storm": storm, "sustained": sustained, "burst": burst}[args.what]
    print(json.dumps(asyncio.run(fn(args))))


if __name__ == "__main__":
    main()
