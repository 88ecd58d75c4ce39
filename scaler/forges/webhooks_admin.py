"""``runner-scaler webhook install|list``: create or inspect the forge's job webhook.

``install`` creates a hook for the configured scope with the job events, JSON
content type and the configured (first) secret — or updates the hook that
already points at the URL, so running it twice changes nothing. Instance scope
on Gitea/Forgejo uses system hooks (``/admin/hooks``).

The URL this scaler is reached at is ``--url`` or, without it,
``server.public_url`` + ``/webhooks/{forge}``; ``list`` says which it
compared with (``reaches_scaler`` is ``null`` when neither is set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

GITEA_EVENTS = ("workflow_job",)
GITHUB_EVENTS = ("workflow_job",)


def _forgejo_events() -> tuple[str, ...]:
    from scaler.forges.forgejo import JOB_EVENTS

    return JOB_EVENTS


def _hooks_path(adapter: Any) -> str:
    kind = adapter.kind
    scope = adapter.config.scope
    if kind == "github":
        if scope.kind not in ("repository", "organization"):
            raise ValueError("GitHub webhooks can be installed for a repository or organization scope only")
        return str(adapter.scope_path) + "/hooks"
    if scope.kind == "instance":
        return str(adapter.api("/admin/hooks"))
    return str(adapter.api(f"{adapter.scope_path}/hooks"))


def _wanted_events(adapter: Any) -> tuple[str, ...]:
    if adapter.kind == "forgejo":
        return _forgejo_events()
    return GITHUB_EVENTS if adapter.kind == "github" else GITEA_EVENTS


def _summarise(adapter: Any, hook: dict[str, Any], url: str | None) -> dict[str, Any]:
    config = hook.get("config") or {}
    events = list(hook.get("events") or [])
    wanted = set(_wanted_events(adapter))
    job_events = bool(wanted & set(events)) or "*" in events
    hook_url = config.get("url")
    reaches = url is not None and hook_url == url and bool(hook.get("active", True)) and job_events
    return {
        "id": hook.get("id"),
        "url": hook_url,
        "events": events,
        "active": bool(hook.get("active", True)),
        "content_type": config.get("content_type"),
        "job_events": job_events,
        "reaches_scaler": reaches,
    }


async def list_hooks(adapter: Any, url: str | None) -> list[dict[str, Any]]:
    """The scope's hooks; ``reaches_scaler`` says whether each would reach ``url``."""
    path = _hooks_path(adapter)
    params = {"type": "system"} if adapter.kind != "github" and adapter.config.scope.kind == "instance" else {}
    resp = await adapter.http.request("GET", path, endpoint="list_hooks", params=params)
    data = resp.json()
    return [_summarise(adapter, h, url) for h in (data if isinstance(data, list) else [])]


async def install_hook(adapter: Any, url: str) -> dict[str, Any]:
    """Create the job webhook, or update the one pointing at ``url``. Idempotent."""
    events = list(_wanted_events(adapter))
    secret = adapter.config.webhook_secrets()[0].reveal()
    path = _hooks_path(adapter)
    existing = [h for h in await list_hooks(adapter, url) if h["url"] == url]
    if adapter.kind == "github":
        config = {"url": url, "content_type": "json", "secret": secret, "insecure_ssl": "0"}
        create: dict[str, Any] = {"name": "web", "config": config, "events": events, "active": True}
    else:
        config = {"url": url, "content_type": "json", "secret": secret, "http_method": "post"}
        hook_type = "forgejo" if adapter.kind == "forgejo" else "gitea"
        create = {"type": hook_type, "config": config, "events": events, "active": True}
    if existing:
        hook = existing[0]
        if set(hook["events"]) >= set(events) and hook["active"] and hook["content_type"] in ("json", None):
            return {"action": "unchanged", "id": hook["id"], "url": url, "events": hook["events"]}
        await adapter.http.request(
            "PATCH",
            f"{path}/{hook['id']}",
            endpoint="update_hook",
            json={"config": config, "events": events, "active": True},
        )
        return {"action": "updated", "id": hook["id"], "url": url, "events": events}
    resp = await adapter.http.request("POST", path, endpoint="create_hook", json=create, ok=(200, 201))
    return {"action": "created", "id": resp.json().get("id"), "url": url, "events": events}


# --- CLI ------------------------------------------------------------------------


def _adapter(config: Any, config_path: str, forge_name: str) -> Any:
    from scaler.forges import build_forge

    try:
        forge = config.forge(forge_name)
    except StopIteration:
        raise SystemExit(f"no forge named {forge_name!r} in {config_path}") from None
    return build_forge(forge)


def scaler_url(config: Any, forge: str, given: str | None) -> tuple[str | None, str | None]:
    """(the webhook URL of this scaler, where it came from)."""
    if given:
        return given, "--url"
    url = config.server.webhook_url(forge)
    return (url, "server.public_url") if url else (None, None)


async def _forgejo_note(adapter: Any) -> str | None:
    if adapter.kind != "forgejo":
        return None
    from scaler.forges.forgejo import version_sends_job_webhooks

    await adapter.get_version()
    if version_sends_job_webhooks(adapter.version_text) is False:
        return (f"Forgejo {adapter.version_text} sends no job webhooks: the hook only starts delivering after an "
                "upgrade to a release that has them; until then jobs are found by polling")
    return None


async def _run(args: argparse.Namespace) -> Any:
    from scaler.config import load_config

    config = load_config(args.config)
    adapter = _adapter(config, args.config, args.forge)
    url, source = scaler_url(config, args.forge, args.url)
    try:
        if args.webhook_cmd == "install":
            if url is None:
                raise ValueError("no URL for this scaler: give --url or set server.public_url")
            result = await install_hook(adapter, url)
            note = await _forgejo_note(adapter)
            return {**result, "url_from": source, **({"note": note} if note else {})}
        hooks = await list_hooks(adapter, url)
        if url is None:
            for h in hooks:
                h["reaches_scaler"] = None
        return {"compared_with": url, "url_from": source or "nothing: give --url or set server.public_url",
                "hooks": hooks}
    finally:
        await adapter.aclose()


def cmd_webhook(args: argparse.Namespace) -> int:
    from scaler.errors import ScalerError

    try:
        result = asyncio.run(_run(args))
    except (ScalerError, ValueError) as exc:
        print(f"ERROR   {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


def add_webhook_subcommands(subparsers: Any) -> None:
    """Add ``webhook install|list`` to the CLI's subparsers."""
    webhook = subparsers.add_parser("webhook", help="install or list the forge's job webhook")
    verbs = webhook.add_subparsers(dest="webhook_cmd", required=True)
    install = verbs.add_parser("install", help="create or update the job webhook (idempotent)")
    install.add_argument("--config", required=True)
    install.add_argument("--forge", required=True)
    install.add_argument("--url", default=None,
                         help="public URL of /webhooks/{forge} on this scaler (default: server.public_url)")
    install.set_defaults(func=cmd_webhook)
    lst = verbs.add_parser("list", help="show the hooks and whether each would reach this scaler")
    lst.add_argument("--config", required=True)
    lst.add_argument("--forge", required=True)
    lst.add_argument("--url", default=None,
                     help="the URL this scaler is reached at (default: server.public_url + /webhooks/{forge})")
    lst.set_defaults(func=cmd_webhook)
