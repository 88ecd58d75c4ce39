"""``runner-scaler trace export``: write a job trace from a forge's job history."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any


def cmd_trace_export(args: argparse.Namespace) -> int:
    from scaler.cli import _load
    from scaler.durations import parse_duration
    from scaler.errors import ForgePermanentError, ForgeTemporaryError
    from scaler.forges import build_forge
    from scaler.trace.export import ExportUnsupported, export
    from scaler.trace.format import TraceJob, write_trace
    from scaler.trace.progress import Progress

    config = _load(args.config)
    try:
        span = parse_duration(args.since)
    except ValueError as exc:
        print(f"ERROR   --since: {exc}", file=sys.stderr)
        return 2
    names = [f.name for f in config.forges]
    forge_name = args.forge or names[0]
    if forge_name not in names:
        print(f"ERROR   --forge: no forge named {forge_name!r} (have: {', '.join(names)})", file=sys.stderr)
        return 2
    for repo in args.repository or []:
        if repo.count("/") != 1 or not all(repo.split("/")):
            print(f"ERROR   --repository: {repo!r} is not owner/repo", file=sys.stderr)
            return 2
    try:
        adapter = build_forge(config.forge(forge_name))
    except (ValueError, OSError) as exc:
        print(f"ERROR   {exc}", file=sys.stderr)
        return 2
    enabled = {"always": True, "never": False}.get(args.progress)
    progress = Progress(sys.stderr, enabled)
    now = time.time()

    async def run() -> list[TraceJob]:
        try:
            return await export(adapter, now - span, now, args.repository, progress)
        finally:
            await adapter.aclose()

    try:
        jobs = asyncio.run(run())
    except (ExportUnsupported, ForgePermanentError, ForgeTemporaryError) as exc:
        print(f"ERROR   {exc}", file=sys.stderr)
        return 1
    if args.out == "-":
        n = write_trace(jobs, sys.stdout)
    else:
        with open(args.out, "w", encoding="utf-8", newline="") as fh:
            n = write_trace(jobs, fh)
    print(f"{n} jobs written to {'standard output' if args.out == '-' else args.out}", file=sys.stderr)
    return 0


def add_trace_subcommand(sub: Any) -> None:
    p = sub.add_parser("trace", help="job traces for runner-scaler simulate")
    verbs = p.add_subparsers(dest="trace_command", required=True)
    e = verbs.add_parser("export", help="write a trace CSV from the forge's job history")
    e.add_argument("--config", required=True)
    e.add_argument("--forge", help="which forge of the config (default: the first)")
    e.add_argument("--since", default="14d", help="how far back (default 14d)")
    e.add_argument("--repository", action="append", help="owner/repo to read (default: the forge's scope)")
    e.add_argument("--out", "-o", default="-", help="CSV file to write (default: standard output)")
    e.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="progress bar on standard error (auto: when it is a terminal)")
    e.set_defaults(func=cmd_trace_export)
