"""``runner-scaler explain --delivery FILE [--config F]``: why did this job get (no) runner?

FILE is ``{"headers": {...}, "body": {...}}`` — a delivery as the forge's
delivery history shows it. Signatures are not verified. Prints one JSON
object; exit 0 when the delivery parsed, 2 when it is malformed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scaler.config import Config, ForgeConfig
from scaler.domain.job import Job
from scaler.domain.labels import GITHUB_IMPLICIT, labels_match
from scaler.errors import MalformedDelivery
from scaler.forges.base import Delivery


def detect_forge(headers: Mapping[str, str]) -> str:
    if any(k.startswith("x-forgejo-") for k in headers):
        return "forgejo"
    if any(k.startswith(("x-gitea-", "x-gogs-")) for k in headers):
        return "gitea"
    if "x-github-event" in headers:
        return "github"
    raise MalformedDelivery("cannot tell the forge: no X-Forgejo-*, X-Gitea-* or X-GitHub-Event header")


def parse_any(forge_kind: str, forge_name: str, headers: Mapping[str, str], body: bytes) -> Delivery:
    if forge_kind == "forgejo":
        from scaler.forges.forgejo import parse_forgejo_delivery

        return parse_forgejo_delivery(forge_name, headers, body)
    if forge_kind == "gitea":
        from scaler.forges.gitea import parse_gitea_delivery

        return parse_gitea_delivery(forge_name, headers, body)
    from scaler.forges.github import parse_github_delivery

    return parse_github_delivery(forge_name, headers, body)[0]


def _raw_ids(body: Any) -> tuple[Any, Any]:
    if not isinstance(body, Mapping):
        return None, None
    j = body.get("workflow_job") or body.get("job") or {}
    if not isinstance(j, Mapping):
        return None, None
    return j.get("id"), j.get("run_id")


def explain(delivery: Mapping[str, Any], config: Config | None = None) -> dict[str, Any]:
    """Explain one delivery; raises MalformedDelivery when it cannot be parsed."""
    raw_headers = delivery.get("headers")
    if not isinstance(raw_headers, Mapping):
        raise MalformedDelivery("the file needs a 'headers' object")
    if "body" not in delivery:
        raise MalformedDelivery("the file needs a 'body'")
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    body_obj = delivery["body"]
    body = body_obj.encode() if isinstance(body_obj, str) else json.dumps(body_obj).encode()
    kind = detect_forge(headers)
    forges = [f for f in config.forges if f.type == kind] if config else []
    forge_name = forges[0].name if forges else kind
    parsed = parse_any(kind, forge_name, headers, body)
    job_id, run_id = _raw_ids(body_obj if not isinstance(body_obj, str) else json.loads(body_obj))
    out: dict[str, Any] = {
        "forge": kind,
        "event": parsed.event,
        "action": parsed.action,
        "job_id": parsed.job.id if parsed.job else job_id,
        "run_id": parsed.job.run_id if parsed.job else run_id,
        "repository": parsed.job.repository if parsed.job else _repo(body_obj),
        "labels": list(parsed.job.labels) if parsed.job else None,
        "state": str(parsed.job.state) if parsed.job else None,
        "pool": None,
        "reason": None,
        "signature": "not verified (explain does not check signatures)",
    }
    if parsed.job is None:
        out["reason"] = f"event ignored: {parsed.ignored}"
        return out
    if config is None:
        out["reason"] = "parsed only (no --config given, so no pool was matched)"
        return out
    if not forges:
        out["reason"] = f"no forge of type {kind} in the config"
        return out
    out["pool"], out["reason"] = explain_job(parsed.job, config, forges)
    return out


def explain_job(job: Job, config: Config, forges: Sequence[ForgeConfig] | None = None) -> tuple[str | None, str]:
    """Which pool serves a parsed job, and why (or why none does): the pool's
    name or None, and the reason. ``forges``: the forges whose pools may take
    it (default: the job's own forge). The web UI asks this for a job that
    got no pool."""
    if forges is None:
        forges = [f for f in config.forges if f.name == job.forge]
    kind = forges[0].type if forges else ""
    implicit = GITHUB_IMPLICIT if kind == "github" else frozenset()
    names = {f.name for f in forges}
    pools = sorted((p for p in config.pools if p.forge in names), key=lambda p: -p.priority)
    label_ok = [p for p in pools if labels_match(job.labels, p.labels, implicit=implicit)]
    if not label_ok:
        have = {p.name: sorted(p.label_names) for p in pools}
        return None, f"no label match: job wants {sorted(set(job.labels))}; pools offer {have}"
    allowed = [p for p in label_ok if p.allow_list.allows(job.repository)]
    if not allowed:
        return None, (
            f"repository not allowed: {job.repository} is not in the allow-list of "
            + ", ".join(f"{p.name} {list(p.repositories)}" for p in label_ok)
        )
    pool = allowed[0]
    return pool.name, (
        f"labels {sorted(set(job.labels))} are served by pool {pool.name} (priority {pool.priority}) "
        f"and {job.repository} is allowed"
    )


def _repo(body: Any) -> str | None:
    if isinstance(body, Mapping):
        repo = body.get("repository")
        if isinstance(repo, Mapping) and isinstance(repo.get("full_name"), str):
            return str(repo["full_name"])
    return None


def cmd_explain(args: argparse.Namespace) -> int:
    from scaler.config import load_config
    from scaler.errors import ConfigError

    try:
        data = json.loads(Path(args.delivery).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(json.dumps({"error": f"cannot read {args.delivery}: {exc}"}))
        return 2
    config = None
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(json.dumps({"error": str(exc)}))
            return 2
    if not isinstance(data, Mapping):
        print(json.dumps({"error": "the delivery file must hold a JSON object"}))
        return 2
    try:
        result = explain(data, config)
    except MalformedDelivery as exc:
        print(json.dumps({"error": f"malformed delivery: {exc}"}))
        return 2
    print(json.dumps(result, indent=2))
    return 0


def add_explain_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("explain", help="explain why a delivery would (not) get a runner")
    p.add_argument("--delivery", required=True, help='JSON file {"headers": {...}, "body": {...}}')
    p.add_argument("--config", default=None)
    p.set_defaults(func=cmd_explain)


__all__ = ["add_explain_subcommand", "cmd_explain", "detect_forge", "explain", "explain_job"]
