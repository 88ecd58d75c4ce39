"""runner-scaler: ephemeral self-hosted CI runners for Gitea, Forgejo and GitHub."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import httpx

from scaler.config import Config, load_config
from scaler.errors import ConfigError
from scaler.provider import Finding
from scaler.secrets import readable_by_others


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"ERROR   config: {problem}", file=sys.stderr)
        raise SystemExit(2) from None


# --- serve -----------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import structlog
    import uvicorn

    from scaler import logging as slog
    from scaler.app import Scaler
    from scaler.plugins import validate_provider_options
    from scaler.web import create_app

    config = _load(args.config)
    slog.configure(config.logging.level, config.logging.format, cache=True)
    log = structlog.get_logger("scaler.cli")
    problems = validate_provider_options(config)
    if problems:
        for p in problems:
            print(f"ERROR   config: {p}", file=sys.stderr)
        return 2
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    try:
        scaler = Scaler(config, elector=_elector(config, port))
        app = create_app(scaler)
    except (ValueError, OSError) as exc:  # e.g. a missing secret file
        print(f"ERROR   {exc}", file=sys.stderr)
        return 2
    for forge in config.forges:
        if forge.insecure_pass_registration_token:
            log.warning(
                "insecure_pass_registration_token is on: instances receive a reusable registration token",
                forge=forge.name,
            )
    log.info("listening", url=f"http://{host}:{port}", webhooks=[f"/webhooks/{f.name}" for f in config.forges])
    if config.ui.on:
        from scaler.web.ui import ui_warnings

        log.info(
            "operator UI", url=f"http://{host}:{port}/ui/", enabled=str(config.ui.enabled), auth=bool(config.ui.auth)
        )
        for warning in ui_warnings(scaler, host):
            log.warning(warning)
    # timeout_graceful_shutdown: on SIGTERM, open requests (a UI event
    # stream too) get 5 s, then the lifespan's Scaler.stop() (bounded by
    # STOP_DEADLINE): the process ends within ~20 s under any load.
    # After its clean shutdown uvicorn restores the signal handlers it found
    # and raises the signal again; with the default ones the process then died
    # of it (exit status -15). Ours end it with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    _tune_gc()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    return 0


def _tune_gc() -> None:
    """Keep the cycle collector's pauses out of the request path.

    Under a 5,000-job storm the full collections that walk every instance,
    job and index entry held the loop for 100-250 ms (``/healthz`` p99
    57-160 ms, mean 101 ms, max up to 257 ms in five runs). What exists at
    start-up (modules, config, templates) is frozen so no collection walks
    it again, and a larger young generation makes collections rarer (50,000
    allocations instead of 700); four runs then gave p99 57-94 ms, mean
    80 ms, max 74-150 ms. The state is freed by reference counting as before.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _elector(config: Config, port: int) -> Any:
    if not config.leader_election.enabled:
        return None
    import importlib

    # Leader election needs the kubernetes client; import it only when used.
    leader = importlib.import_module("scaler.leader")
    le = config.leader_election
    api_client = leader.LeaseElector.api_client_from(kubeconfig=le.kubeconfig, context=le.context)
    return leader.LeaseElector(le, api_client, advertise_url=advertise_url(le.advertise_url, port))


def advertise_url(configured: str | None, port: int) -> str | None:
    """Where followers reach this replica: the configured URL, else the pod's
    own address (``POD_IP``, from the downward API) on the listening port."""
    if configured:
        return configured
    pod_ip = os.environ.get("POD_IP", "").strip()
    if not pod_ip:
        return None
    return f"http://[{pod_ip}]:{port}" if ":" in pod_ip else f"http://{pod_ip}:{port}"


# --- check -----------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"ERROR   config: {problem}")
        return 1
    from scaler.plugins import validate_provider_options

    findings = [Finding("error", "config", p) for p in validate_provider_options(config)]
    findings += _secret_findings(config)
    if not args.offline and not any(f.level == "error" for f in findings):
        findings += asyncio.run(_probe(config))
    if not findings or all(f.level != "error" for f in findings):
        findings.insert(0, Finding("ok", "config", f"{args.config} is valid ({len(config.pools)} pools)"))
    for f in findings:
        print(f)
    return 1 if any(f.level == "error" for f in findings) else 0


def _secret_findings(config: Config) -> list[Finding]:
    out: list[Finding] = []
    for i, forge in enumerate(config.forges):
        try:
            forge.webhook_secrets()
            forge.token()
        except ValueError as exc:
            out.append(Finding("error", f"forges[{i}]", str(exc)))
        for path in forge.secret_files():
            if readable_by_others(path):
                out.append(
                    Finding("warning", f"forges[{i}]", f"secret file {path} is readable by group or others (chmod 600)")
                )
        if forge.insecure_pass_registration_token:
            out.append(
                Finding(
                    "warning",
                    f"forges[{i}]",
                    "insecure_pass_registration_token: instances get a reusable registration token",
                )
            )
    return out + _ui_findings(config)


def _ui_findings(config: Config) -> list[Finding]:
    auth = config.ui.auth
    if auth is None:
        return []
    try:
        auth.secret()
    except ValueError as exc:
        return [Finding("error", "ui.auth", str(exc))]
    path = auth.password_file or auth.token_file
    if path is not None and readable_by_others(path):
        return [Finding("warning", "ui.auth", f"secret file {path} is readable by group or others (chmod 600)")]
    return []


async def _probe(config: Config) -> list[Finding]:
    from scaler.forges import build_forge
    from scaler.plugins import build_providers

    findings: list[Finding] = []
    for fc in config.forges:
        forge = build_forge(fc)
        try:
            findings += await forge.check()
        except Exception as exc:
            findings.append(Finding("error", f"forge {fc.name}", f"probe failed: {exc}"))
        finally:
            await forge.aclose()
    providers = build_providers(config)
    for name, provider in providers.items():
        pools = {p.name: dict(p.provider_options) for p in config.pools if p.provider == name}
        try:
            findings += await provider.check(pools)
        except Exception as exc:
            findings.append(Finding("error", f"provider {name}", f"probe failed: {exc}"))
        finally:
            await provider.close()
    return findings


# --- status ----------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/")
    try:
        pools = httpx.get(f"{url}/api/v1/pools", timeout=5).raise_for_status().json()["pools"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        print(f"ERROR   cannot read {url}/api/v1/pools: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(pools, indent=2))
        return 0
    print(render_status(pools))
    return 0


def render_status(pools: Sequence[dict[str, Any]]) -> str:
    states = ["pending", "creating", "starting", "idle", "busy", "done", "deleting", "failed"]
    # QUEUED is demand (what waits for this pool); HELD the part of it no
    # instance was planned for, because of max or a cap.
    header = ["POOL", "QUEUED", "HELD", "RUNNING", *[s.upper() for s in states], "MAX"]
    rows = [header]
    for p in pools:
        inst = p.get("instances", {})
        rows.append(
            [
                p["name"],
                str(p["queued"]),
                str(p.get("held_back", 0)),
                str(p["in_progress"]),
                *[str(inst.get(s, 0)) for s in states],
                str(p["max"]),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    # Why each warm pool holds what it holds (scaler.warm); absent keys: an older scaler.
    for p in pools:
        warm = p.get("warm")
        if isinstance(warm, dict):
            lines.append(f"warm {p['name']}: holds {warm.get('target_idle')} idle: {warm.get('reason')}")
    return "\n".join(lines)


# --- entry -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runner-scaler", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the scaler")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)
    check = sub.add_parser("check", help="validate the config and probe forges and providers")
    check.add_argument("--config", required=True)
    check.add_argument("--offline", action="store_true", help="validate only; contact nothing")
    check.set_defaults(func=cmd_check)
    status = sub.add_parser("status", help="show pools of a running scaler")
    status.add_argument("--url", default="http://127.0.0.1:8080")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    _add_optional_verbs(sub)
    return parser


def _add_optional_verbs(sub: Any) -> None:
    """Verbs that live beside the forge adapters."""
    from scaler.explain import add_explain_subcommand
    from scaler.forges.webhooks_admin import add_webhook_subcommands

    add_webhook_subcommands(sub)
    add_explain_subcommand(sub)
    from scaler.sim.cli import add_simulate_subcommand
    from scaler.trace.cli import add_trace_subcommand

    add_simulate_subcommand(sub)
    add_trace_subcommand(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
