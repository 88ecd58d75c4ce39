"""``runner-scaler trace export``: write a job trace from a forge's job history."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_trace_export(args: argparse.Namespace) -> int:
    from scaler.trace.export import cmd_export

    return cmd_export(args)


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
