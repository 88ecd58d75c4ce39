"""Webhook deliveries: ``emit`` records one per hook, signed and headed as the
forge does (Gitea ``services/webhook/deliver.go`` ``addDefaultHeaders``,
Forgejo ``services/webhook/shared/payloader.go`` ``AddDefaultHeaders``,
GitHub's ``x-webhooks`` headers; recorded in ``tests/forges/shapes``);
``flush`` sends them, with seeded faults (drop, duplicate, reorder, delay).

Gitea and Forgejo write the body with ``json.MarshalIndent(p, "", "  ")``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from scaler.testing.fake_forge_server._base import FJob, SentDelivery
from scaler.testing.fake_forge_server.render_forgejo import ForgejoShapes
from scaler.testing.fake_forge_server.render_github import GitHubShapes

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class DeliveryFaults:
    """What ``flush`` does to the pending deliveries (seeded, reproducible)."""

    drop: float = 0.0  # probability
    duplicate: float = 0.0  # probability
    reorder: bool = False
    delay: float = 0.0  # seconds before each send
    seed: int = 0


class WebhookMixin(ForgejoShapes, GitHubShapes):
    outbox: list[SentDelivery]
    sent: list[SentDelivery]
    webhook_targets: list[tuple[str, str]]  # (url, secret) outside the hook API

    def subscribe(self, url: str, secret: str) -> None:
        """Deliver webhooks to ``url`` without going through the hook API."""
        self.webhook_targets.append((url, secret))

    def _targets(self) -> list[tuple[str, str, list[str] | None]]:
        out: list[tuple[str, str, list[str] | None]] = [(u, s, None) for u, s in self.webhook_targets]
        out += [(h.url, h.secret, h.events) for h in self.hooks.values() if h.active]
        return out

    def render_delivery(self, job: FJob, previous: str | None = None) -> tuple[str, dict[str, Any]] | None:
        """(event, body) the forge sends for the job's current status, or None."""
        if self.kind == "forgejo":
            return self.forgejo_payload(job, previous)
        if self.kind == "gitea":
            return self.gitea_payload(job)
        return self.github_payload(job)

    def emit(self, job: FJob, previous: str | None = None) -> None:
        """Record the delivery for the job's current status (nothing if the forge sends none)."""
        rendered = self.render_delivery(job, previous)
        if rendered is None:
            return
        event, payload = rendered
        # Go's MarshalIndent (two spaces, UTF-8 as is); orjson writes that in C,
        # where json.dumps(indent=2) falls back to its pure-Python encoder.
        if self.kind == "github":
            body = json.dumps(payload).encode()
        else:
            body = orjson.dumps(payload, option=orjson.OPT_INDENT_2)
        for url, secret, events in self._targets():
            if events is not None and event not in events and "*" not in events:
                continue
            self.outbox.append(SentDelivery(url, self.sign_headers(event, body, secret), body))

    def sign_headers(self, event: str, body: bytes, secret: str) -> dict[str, str]:
        key = secret.encode()
        sha256 = hmac.new(key, body, hashlib.sha256).hexdigest() if secret else ""
        sha1 = hmac.new(key, body, hashlib.sha1).hexdigest() if secret else ""
        delivery = str(uuid.uuid4())
        if self.kind == "github":
            h = {"content-type": "application/json", "user-agent": "GitHub-Hookshot/fake", "x-github-event": event,
                 "x-github-delivery": delivery, "x-github-hook-id": "1",
                 "x-github-hook-installation-target-type": "repository",
                 "x-github-hook-installation-target-id": "1"}
            if secret:
                h["x-hub-signature-256"] = f"sha256={sha256}"
            return h
        h = {"content-type": "application/json"}
        # Event() and the event type are the same string for job events.
        sets = (["forgejo"] if self.kind == "forgejo" else []) + ["gitea", "gogs"]
        for name in sets:
            h[f"x-{name}-delivery"] = delivery
            h[f"x-{name}-event"] = event
            h[f"x-{name}-event-type"] = event
            h[f"x-{name}-signature"] = sha256
        h.update({"x-hub-signature": f"sha1={sha1}", "x-hub-signature-256": f"sha256={sha256}",
                  "x-github-delivery": delivery, "x-github-event": event, "x-github-event-type": event})
        if self.kind == "gitea":
            h["x-gitea-hook-installation-target-type"] = "organization"
            h["x-github-hook-installation-target-type"] = "organization"
        return h

    async def flush(self, faults: DeliveryFaults | None = None, *, timeout: float = 5.0) -> list[SentDelivery]:
        """Send every pending delivery (to loopback targets only)."""
        f = faults or DeliveryFaults()
        rng = random.Random(f.seed)  # noqa: S311 - reproducible faults, not crypto
        pending, self.outbox = self.outbox, []
        batch: list[SentDelivery] = []
        for d in pending:
            if f.drop and rng.random() < f.drop:
                continue
            batch.append(d)
            if f.duplicate and rng.random() < f.duplicate:
                batch.append(SentDelivery(d.url, dict(d.headers), d.body))
        if f.reorder:
            rng.shuffle(batch)
        async with httpx.AsyncClient(timeout=timeout) as client:
            for d in batch:
                host = httpx.URL(d.url).host
                if host not in _LOOPBACK:
                    raise ValueError(f"refusing to deliver to a non-loopback host {host!r}")
                if f.delay:
                    await asyncio.sleep(f.delay)
                resp = await client.post(d.url, content=d.body, headers=d.headers)
                d.status = resp.status_code
                self.sent.append(d)
        return batch


__all__ = ["DeliveryFaults", "WebhookMixin"]
