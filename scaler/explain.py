"""``runner-scaler explain --delivery FILE [--config F] [--forge NAME] [--forge-type T]``:
why did this job get (no) runner?

FILE is ``{"headers": {...}, "body": {...} | "<raw body>"}`` — a delivery as
the forge's delivery history shows it. Without a config the forge type comes
from ``--forge-type`` or the headers (``X-Forgejo-*`` → Forgejo,
``X-Gitea-*``/``X-Gogs-*`` → Gitea, ``X-GitHub-Event`` → GitHub). With one,
the delivery is read by the forge it would be posted to — ``--forge``, the
only forge, or the one forge whose type fits the headers (the ``fake`` type
reads GitHub-shaped deliveries) — with the same parser, pool index and
acceptance rule as ``serve``. The signature is checked when the body is given
raw and the forge's secrets can be read. Prints one JSON object; exit 0 when
the delivery parsed, 2 when it is malformed or the forge cannot be told.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from scaler.config import Config, ForgeConfig
from scaler.domain.job import Job, JobState
from scaler.domain.labels import GITHUB_IMPLICIT, labels_match
from scaler.errors import MalformedDelivery, SignatureError
from scaler.forges.base import Delivery

FORGE_TYPES = ("gitea", "forgejo", "github", "fake")
# Which delivery family each configured forge type reads.
_FAMILY = {"gitea": "gitea", "forgejo": "forgejo", "github": "github", "fake": "github"}

Parser = Callable[[str, Mapping[str, str], bytes], Delivery]


def detect_forge(headers: Mapping[str, str]) -> str:
    if any(k.startswith("x-forgejo-") for k in headers):
        return "forgejo"
    if any(k.startswith(("x-gitea-", "x-gogs-")) for k in headers):
        return "gitea"
    if "x-github-event" in headers:
        return "github"
    raise MalformedDelivery("cannot tell the forge: no X-Forgejo-*, X-Gitea-* or X-GitHub-Event header "
                            "(give --forge-type)")


def parser_for(forge_type: str, forge: ForgeConfig | None = None) -> Parser:
    """The parser ``serve`` uses for a forge of this type."""
    if forge_type == "forgejo":
        from scaler.forges.forgejo import parse_forgejo_delivery

        return parse_forgejo_delivery
    if forge_type == "gitea":
        from scaler.forges.gitea import parse_gitea_delivery

        return parse_gitea_delivery
    if forge_type == "fake":
        from scaler.testing.fake_forge import FakeForge, FakeForgeState

        if forge is None:
            raise ValueError("the fake forge type needs its config")
        return lambda name, h, b: FakeForge(forge, FakeForgeState(secret="")).parse(h, b)
    from scaler.forges.github import parse_github_delivery

    return lambda name, h, b: parse_github_delivery(name, h, b)[0]


def choose_forge(config: Config, headers: Mapping[str, str], name: str | None, forge_type: str | None) -> ForgeConfig:
    """The configured forge this delivery would be posted to."""
    if name is not None:
        try:
            return config.forge(name)
        except StopIteration:
            have = ", ".join(f.name for f in config.forges)
            raise MalformedDelivery(f"no forge named {name!r} in the config (have: {have})") from None
    if len(config.forges) == 1:
        return config.forges[0]
    family = forge_type if forge_type is not None else detect_forge(headers)
    fits = [f for f in config.forges if _FAMILY[f.type] == _FAMILY.get(family, family) or f.type == family]
    if len(fits) == 1:
        return fits[0]
    have = ", ".join(f"{f.name} ({f.type})" for f in config.forges)
    if not fits:
        raise MalformedDelivery(f"no forge of type {family} in the config (have: {have}); give --forge")
    raise MalformedDelivery(f"several forges could have received it ({have}); give --forge NAME (the webhook path)")


def _signature(forge: ForgeConfig, headers: Mapping[str, str], raw: bytes | None) -> str:
    if raw is None:
        return "not checked: the body is given as JSON, not the raw bytes that were signed"
    from scaler.forges._signature import FORGEJO, GITEA, GOGS, HUB_256, verify_signature

    accepted = {"gitea": (HUB_256, GITEA, GOGS), "forgejo": (HUB_256, FORGEJO, GITEA, GOGS)}.get(forge.type,
                                                                                               (HUB_256,))
    try:
        verify_signature(headers, raw, forge.webhook_secrets(), accepted=accepted)
    except ValueError as exc:
        return f"not checked: {exc}"
    except SignatureError as exc:
        return f"invalid: {exc} (serve answers 401)"
    return "valid"


def explain_job(job: Job, config: Config, forges: Sequence[ForgeConfig] | None = None) -> tuple[str | None, str]:
    """Which pool serves a parsed job, and why (or why none does): the pool's
    name or None, and the reason — ``serve``'s own pool index decides.
    ``forges``: the forge the job came in by (default: the job's own forge).
    The web UI asks this for a job that got no pool."""
    from scaler.planner import PoolIndex

    forge = (forges[0] if forges else None) or next((f for f in config.forges if f.name == job.forge), None)
    if forge is None:
        return None, f"no forge named {job.forge!r} in the config"
    if job.forge != forge.name:
        job = dataclasses.replace(job, forge=forge.name)
    candidates = PoolIndex(config).candidates(job)
    if not candidates:
        return None, _why_no_pool(config, forge, job.labels, job.repository)
    pool = candidates[0]
    if job.state is not JobState.QUEUED:
        return pool.name, (f"job is {job.state.value}: no new instance; the report updates the instance running it "
                           f"(pool {pool.name} serves such jobs)")
    rest = f"; if it is at max or a cap, then {', '.join(p.name for p in candidates[1:])}" if candidates[1:] else ""
    return pool.name, (f"labels {sorted(set(job.labels))} are served by pool {pool.name} (priority {pool.priority}) "
                       f"and {job.repository} is allowed{rest}")


def _decision(config: Config, forge: ForgeConfig, parsed: Delivery, out: dict[str, Any]) -> None:
    """``serve``'s acceptance (web/webhooks.py ``_accept``) and pool choice."""
    if parsed.job is None:
        out["serve"] = "200 ignored"
        out["reason"] = f"event ignored: {parsed.ignored}"
        return
    out["pool"], out["reason"] = explain_job(parsed.job, config, [forge])
    if out["pool"] is None:
        out["serve"] = "200 not_served (unless the job names a runner of an instance of this scaler)"
    else:
        out["serve"] = "202 accepted"


def _why_no_pool(config: Config, forge: ForgeConfig, labels: tuple[str, ...], repository: str) -> str:
    implicit = GITHUB_IMPLICIT if forge.type == "github" else frozenset()
    pools = sorted((p for p in config.pools if p.forge == forge.name), key=lambda p: -p.priority)
    label_ok = [p for p in pools if labels_match(labels, p.labels, implicit=implicit)]
    if not label_ok:
        have = {p.name: sorted(p.label_names) for p in pools}
        return f"no label match: job wants {sorted(set(labels))}; pools of forge {forge.name} offer {have}"
    return (f"repository not allowed: {repository} is not in the allow-list of "
            + ", ".join(f"{p.name} {list(p.repositories)}" for p in label_ok))


def _body(delivery: Mapping[str, Any]) -> tuple[bytes, bytes | None, Any]:
    """(bytes to parse, the raw bytes if given raw, the body as JSON)."""
    body_obj = delivery["body"]
    if isinstance(body_obj, str):
        raw = body_obj.encode()
        try:
            return raw, raw, json.loads(body_obj)
        except ValueError:
            return raw, raw, None
    return json.dumps(body_obj).encode(), None, body_obj


def explain(
    delivery: Mapping[str, Any],
    config: Config | None = None,
    *,
    forge_name: str | None = None,
    forge_type: str | None = None,
) -> dict[str, Any]:
    """Explain one delivery; raises MalformedDelivery when it cannot be parsed."""
    raw_headers = delivery.get("headers")
    if not isinstance(raw_headers, Mapping):
        raise MalformedDelivery("the file needs a 'headers' object")
    if "body" not in delivery:
        raise MalformedDelivery("the file needs a 'body'")
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    body, raw, body_obj = _body(delivery)
    forge = choose_forge(config, headers, forge_name, forge_type) if config else None
    kind = forge.type if forge else (forge_type or detect_forge(headers))
    parsed = parser_for(kind, forge)(forge.name if forge else kind, headers, body)
    job = parsed.job
    out: dict[str, Any] = {
        "forge": forge.name if forge else kind,
        "forge_type": kind,
        "event": parsed.event,
        "action": parsed.action,
        "job_id": job.id if job else _raw(body_obj, "id"),
        "run_id": job.run_id if job else _raw(body_obj, "run_id"),
        "repository": job.repository if job else _repo(body_obj),
        "labels": list(job.labels) if job else None,
        "state": str(job.state) if job else None,
        "pool": None,
        "reason": None,
        "signature": _signature(forge, headers, raw) if forge else "not checked (no --config)",
    }
    if config is None or forge is None:
        out["reason"] = (f"event ignored: {parsed.ignored}" if job is None
                         else "parsed only (no --config given, so no pool was matched)")
        return out
    _decision(config, forge, parsed, out)
    return out


def _raw(body: Any, key: str) -> Any:
    if not isinstance(body, Mapping):
        return None
    j = body.get("workflow_job") or body.get("job") or {}
    return j.get(key) if isinstance(j, Mapping) else None


def _repo(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    for holder in (body, body.get("run")):
        repo = holder.get("repository") if isinstance(holder, Mapping) else None
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
        result = explain(data, config, forge_name=getattr(args, "forge", None),
                         forge_type=getattr(args, "forge_type", None))
    except MalformedDelivery as exc:
        print(json.dumps({"error": f"malformed delivery: {exc}", "serve": "400 malformed"}))
        return 2
    print(json.dumps(result, indent=2))
    return 0


def add_explain_subcommand(subparsers: Any) -> None:
    p = subparsers.add_parser("explain", help="explain why a delivery would (not) get a runner")
    p.add_argument("--delivery", required=True, help='JSON file {"headers": {...}, "body": {...} or "raw"}')
    p.add_argument("--config", default=None, help="decide as serve does with this config")
    p.add_argument("--forge", default=None, help="the forge it was posted to (/webhooks/NAME)")
    p.add_argument("--forge-type", default=None, choices=FORGE_TYPES,
                   help="read it as this forge type (default: from the headers)")
    p.set_defaults(func=cmd_explain)


__all__ = [
    "add_explain_subcommand",
    "choose_forge",
    "cmd_explain",
    "detect_forge",
    "explain",
    "explain_job",
    "parser_for",
]
