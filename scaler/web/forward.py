"""Followers forward to the leader: webhook deliveries and API reads.

Every replica is Ready and behind the same Service, so a delivery may reach a
follower. Gitea and Forgejo do not retry a failed delivery (and give up after
``[webhook] DELIVER_TIMEOUT``, 5 s by default: Gitea ``modules/setting/webhook.go``),
so a follower must serve it rather than refuse it: it passes the request on to
the leader it last saw in the Lease (``runner-scaler.io/leader-url``) and
relays the answer. During a hand-over (no holder, or the old leader no longer
answering) it keeps trying for ``leader_election.forward_timeout``, and serves
the delivery itself if it becomes the leader meanwhile.

Why forwarding rather than the leader labelling its own pod for the Service to
select: a label change takes endpoint propagation (kube-proxy, ingress
controllers) to reach the traffic, which is seconds in which deliveries go to
a replica that no longer leads, or to none; forwarding needs no permission to
patch pods, and works behind any ingress or load balancer.

A forwarded request carries ``x-runner-scaler-forwarded-by``; a replica that
is not the leader answers such a request 503 instead of forwarding it again,
so two replicas that disagree about the leader never bounce it between them.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import structlog
from starlette.responses import JSONResponse, Response

from scaler import metrics
from scaler.app import Scaler

log = structlog.get_logger("scaler.forward")

FORWARDED_BY = "x-runner-scaler-forwarded-by"
# Headers that describe one connection, not the message (RFC 9110 §7.6.1),
# plus those httpx sets itself.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}
    | {"content-length", "accept-encoding"}
)


class Forwarder:
    """One HTTP client for every forwarded request of this replica."""

    def __init__(self, scaler: Scaler) -> None:
        self.scaler = scaler
        le = scaler.config.leader_election
        self.timeout = le.forward_timeout
        self.retry = min(le.retry_period, 0.5)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # The leader's address is a pod IP: never through a proxy.
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _leader(self) -> tuple[str | None, str | None]:
        observe = getattr(self.scaler.elector, "leader", None)
        return observe() if callable(observe) else (None, None)

    async def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes, *, query: str = ""
    ) -> Response | None:
        """The leader's answer, or None when this replica leads now (serve it
        here). 503 when no leader answered within ``forward_timeout``."""
        deadline = time.monotonic() + self.timeout
        reason = "no leader"
        while True:
            if self.scaler.leading:
                return None
            holder, url = self._leader()
            if holder is not None and url is None:
                reason = f"the leader {holder} advertises no address (leader_election.advertise_url)"
                break
            if url is not None:
                answer = await self._send(url, method, path, headers, body, query, deadline)
                if answer is not None:
                    return answer
                reason = f"the leader at {url} did not answer"
            if time.monotonic() + self.retry > deadline:
                break
            await asyncio.sleep(self.retry)
        log.warning("cannot forward to the leader", path=path, reason=reason)
        return JSONResponse({"result": "not_leader", "error": f"this replica is not the leader; {reason}"}, 503)

    async def _send(
        self, url: str, method: str, path: str, headers: dict[str, str], body: bytes, query: str, deadline: float
    ) -> Response | None:
        send = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        send[FORWARDED_BY] = str(getattr(self.scaler.elector, "identity", "follower"))
        target = url.rstrip("/") + path + (f"?{query}" if query else "")
        try:
            resp = await self._http().request(
                method, target, headers=send, content=body, timeout=max(0.1, deadline - time.monotonic())
            )
        except httpx.HTTPError as exc:
            log.info("forward to the leader failed", url=url, error=type(exc).__name__)
            return None
        if resp.status_code == 503 and resp.headers.get("x-runner-scaler-not-leader"):
            return None  # it stepped down meanwhile: look again
        out = Response(resp.content, status_code=resp.status_code, media_type=resp.headers.get("content-type"))
        out.headers["x-runner-scaler-served-by"] = url
        return out


def not_leader(forge: str) -> Response:
    """A forwarded request that reached a replica that does not lead either."""
    metrics.WEBHOOKS.labels(forge, "unknown", "not_leader").inc()
    resp = JSONResponse({"result": "not_leader", "error": "this replica is not the leader"}, 503)
    resp.headers["x-runner-scaler-not-leader"] = "1"
    return resp
