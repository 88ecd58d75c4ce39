"""``runner-scaler simulate``: replay a trace against one config, or two side by side.

    runner-scaler simulate --config F --trace T.csv [--provider-start 60s |
        --provider-start-dist median=40s,p95=90s] [--from WHEN --to WHEN]
        [--warmup 7d] [--target-wait 30s] [--json OUT] [--plot OUT.png]
    runner-scaler simulate --compare A.yaml B.yaml --trace T.csv ...

WHEN is seconds since the epoch, an ISO date/time (UTC unless it says), or a
duration from the trace's first arrival (``3d``). Exit 0 after a report; 2
on a bad argument, config or trace (each problem named).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scaler.config import Config, load_config
from scaler.durations import parse_duration
from scaler.errors import ConfigError
from scaler.sim import report
from scaler.sim.engine import Replay, ReplayOptions, replay
from scaler.sim.latency import Latency, parse_distribution, parse_fixed
from scaler.trace.format import TraceError, TraceJob, read_trace


class UsageError(ValueError):
    pass


def parse_when(text: str, first: float) -> float:
    """Epoch seconds, an ISO-8601 time (UTC by default) or a duration after ``first``."""
    value = text.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return first + parse_duration(value)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{text!r} is not epoch seconds, an ISO date/time or a duration (3d)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _latency(args: argparse.Namespace) -> Latency:
    try:
        if args.provider_start_dist:
            return parse_distribution(args.provider_start_dist)
        return parse_fixed(args.provider_start)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _options(args: argparse.Namespace, jobs: list[TraceJob]) -> ReplayOptions:
    first = jobs[0].queued_at
    try:
        start = parse_when(args.from_, first) if args.from_ else None
        end = parse_when(args.to, first) if args.to else None
        warmup = parse_duration(args.warmup)
    except (UsageError, ValueError) as exc:
        raise UsageError(f"--from/--to/--warmup: {exc}") from None
    if start is not None and end is not None and end <= start:
        raise UsageError("--to must be after --from")
    begin = start if start is not None else first
    stop = end if end is not None else jobs[-1].queued_at
    if begin + warmup >= stop:
        raise UsageError(f"--warmup {args.warmup} leaves nothing of the trace to report")
    return ReplayOptions(_latency(args), start, end, warmup, args.forge, args.seed)


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise UsageError("\n".join(f"config {path}: {p}" for p in exc.problems)) from None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Replay and report; returns {label: report} (and writes --json/--plot)."""
    from scaler import logging as slog

    slog.configure("warning", "console", cache=False)  # the core's info lines are per instance
    paths = args.compare if args.compare else [args.config]
    if not paths or any(p is None for p in paths):
        raise UsageError("give --config F, or --compare A.yaml B.yaml")
    try:
        target = parse_duration(args.target_wait)
    except ValueError as exc:
        raise UsageError(f"--target-wait: {exc}") from None
    try:
        jobs = read_trace(args.trace)
    except TraceError as exc:
        raise UsageError("\n".join(exc.problems)) from None
    options = _options(args, jobs)
    configs = {_label(p, paths): _load(p) for p in paths}
    replays: dict[str, Replay] = {}
    reports: dict[str, dict[str, Any]] = {}
    for label, config in configs.items():
        try:
            replays[label] = asyncio.run(replay(config, jobs, options))
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        meta = {"config": str(Path(paths[list(configs).index(label)])), "trace": str(args.trace),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        reports[label] = report.build(replays[label], target_wait=target, meta=meta)
    if args.json:
        data: Any = reports[next(iter(reports))] if len(reports) == 1 else {"compare": reports}
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.plot:
        from scaler.sim.plot import plot

        plot(replays, reports, args.plot)
    return reports


def _label(path: str, paths: list[str]) -> str:
    stem = Path(path).stem
    stems = [Path(p).stem for p in paths]
    return stem if stems.count(stem) == 1 else path


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        reports = run(args)
    except UsageError as exc:
        for line in str(exc).splitlines():
            print(f"ERROR   {line}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # e.g. --plot without matplotlib
        print(f"ERROR   {exc}", file=sys.stderr)
        return 2
    print(report.table(reports))
    for label, rep in reports.items():
        r = rep["replay"]
        print(f"{label}: replayed {r['days']:g} days in {r['replay_seconds']:.1f}s ({r['passes']} passes)"
              + (f"; {r['unmatched_jobs']} jobs no pool serves" if r["unmatched_jobs"] else ""))
    return 0


def add_simulate_subcommand(sub: Any) -> None:
    p = sub.add_parser("simulate", help="replay a job trace through the scaler and report waits and idle cost")
    p.add_argument("--config", help="the scaler config to replay")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two configs side by side on the same trace")
    p.add_argument("--trace", required=True, help="job trace CSV (runner-scaler trace export)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--provider-start", default="60s", help="runner start latency (default 60s)")
    start.add_argument("--provider-start-dist", help="log-normal start latency: median=40s,p95=90s")
    p.add_argument("--from", dest="from_", help="first arrival to replay (epoch, ISO time, or duration)")
    p.add_argument("--to", help="replay arrivals before this")
    p.add_argument("--warmup", default="0s", help="replayed but left out of the report (warm pools learn)")
    p.add_argument("--target-wait", default="30s", help="jobs waiting longer are counted as over target")
    p.add_argument("--forge", help="the config's forge the trace belongs to (default: the first)")
    p.add_argument("--seed", type=int, default=0, help="seed for --provider-start-dist")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--plot", help="write queue depth, instances and waits over time as a PNG")
    p.set_defaults(func=cmd_simulate)
