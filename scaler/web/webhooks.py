"""``POST /webhooks/{forge}``: verify → parse → enqueue → 202.

Handlers never call a provider or the forge; they only hand an event to the
reconciler (DESIGN, "One writer"). Status codes: 202 accepted, 200 ignored or
duplicate, 400 malformed, 401 bad signature, 404 unknown forge, 413 too large,
415 not JSON, 503 queue full or no leader reachable. A follower verifies the
signature and forwards the delivery to the leader (``forward.py``).
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler import metrics
from scaler.app import Scaler
from scaler.errors import WebhookError
from scaler.events import JobReported
from scaler.forges.base import Delivery
from scaler.web.forward import FORWARDED_BY, Forwarder, not_leader

log = structlog.get_logger("scaler.webhooks")


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:  # cut off while streaming, never read whole
            raise _TooLarge
    return bytes(body)


def _reply(forge: str, event: str, result: str, status: int, **extra: object) -> Response:
    metrics.WEBHOOKS.labels(forge, event, result).inc()
    return JSONResponse({"result": result, **extra}, status_code=status)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def receive(request: Request) -> Response:
    scaler: Scaler = request.app.state.scaler
    name = request.path_params["forge"]
    forge = scaler.forges.get(name)
    if forge is None:
        log.info("webhook for unknown forge", forge=name)
        return _reply("unknown", "unknown", "unknown_forge", 404, error=f"no forge named {name!r}")
    try:
        body = await _read_body(request, scaler.config.server.max_body_bytes)
    except _TooLarge:
        log.warning("webhook body too large", forge=name)
        resp = _reply(name, "unknown", "too_large", 413, error=f"body over {scaler.config.server.max_body_bytes} bytes")
        # Close the connection: otherwise the server keeps receiving (and
        # discarding) the rest of the upload, however large.
        resp.headers["connection"] = "close"
        return resp
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        forge.verify(headers, body)  # before forwarding: a follower passes on only signed deliveries
    except WebhookError as exc:
        return _refused(name, exc)
    if not scaler.leading:
        forwarded = await _forward(request, name, headers, body)
        if forwarded is not None:
            return forwarded
    try:
        if not _is_json(headers.get("content-type", "")):
            log.warning("webhook refused", forge=name, status=415, reason="content type is not JSON")
            return _reply(name, "unknown", "unsupported_media_type", 415, error="content type must be application/json")
        delivery = forge.parse(headers, body)
    except WebhookError as exc:
        return _refused(name, exc)
    except (ValueError, RecursionError, UnicodeError) as exc:
        log.warning("webhook refused", forge=name, status=400, reason=type(exc).__name__)
        return _reply(name, "unknown", "malformed", 400, error=f"malformed body ({type(exc).__name__})")
    return _accept(scaler, name, delivery)


def _refused(name: str, exc: WebhookError) -> Response:
    result = "bad_signature" if exc.status == 401 else "malformed"
    log.warning("webhook refused", forge=name, status=exc.status, reason=str(exc))
    return _reply(name, "unknown", result, exc.status, error=str(exc))


async def _forward(request: Request, name: str, headers: dict[str, str], body: bytes) -> Response | None:
    """A follower's part: the leader's answer, or None when it leads now."""
    if FORWARDED_BY in headers:  # the sender thinks we lead; we do not
        log.info("forwarded webhook refused: not the leader", forge=name, sender=headers[FORWARDED_BY])
        return not_leader(name)
    forwarder: Forwarder = request.app.state.forwarder
    answer = await forwarder.forward("POST", request.url.path, headers, body)
    if answer is not None:
        metrics.WEBHOOKS.labels(name, "unknown", "forwarded").inc()
        log.debug("webhook forwarded to the leader", forge=name, status=answer.status_code)
    return answer


def _accept(scaler: Scaler, name: str, delivery: object) -> Response:
    assert isinstance(delivery, Delivery)
    event = delivery.event or "unknown"
    dedupe_key = f"{name}:{delivery.delivery_id}" if delivery.delivery_id else None
    if dedupe_key is not None and scaler.deliveries.seen(dedupe_key):
        log.info("webhook duplicate ignored", forge=name, delivery=delivery.delivery_id)
        _journal(scaler, delivery, "duplicate")
        return _reply(name, event, "duplicate", 200)
    if delivery.job is None:
        log.debug("webhook ignored", forge=name, webhook_event=event, reason=delivery.ignored)
        return _reply(name, event, "ignored", 200, reason=delivery.ignored)
    job = delivery.job
    if job.runner_name not in scaler.store.instances and not scaler.reconciler.index.candidates(job):
        log.info("webhook for a job no pool serves", forge=name, job=job.id, repository=job.repository)
        _journal(scaler, delivery, "not_served")
        # Still recorded (best effort), so the job is counted as unservable
        # until it ends, exactly as one seen in a queue listing is.
        if scaler.inbox.offer(JobReported(job, scaler.clock.now(), delivery.delivery_id)) and dedupe_key:
            scaler.deliveries.add(dedupe_key)
        return _reply(name, event, "not_served", 200, reason="no pool serves this repository and labels")
    if not scaler.inbox.offer(JobReported(job, scaler.clock.now(), delivery.delivery_id)):
        log.warning("event queue full, delivery refused", forge=name, job=job.id)
        _journal(scaler, delivery, "queue_full")
        return _reply(name, event, "queue_full", 503, error="event queue full; retry later")
    if dedupe_key is not None:
        scaler.deliveries.add(dedupe_key)
    log.debug("webhook accepted", forge=name, delivery=delivery.delivery_id, job=job.id, state=str(job.state))
    _journal(scaler, delivery, "accepted")
    return _reply(name, event, "accepted", 202)


def _journal(scaler: Scaler, delivery: Delivery, result: str) -> None:
    """Tell the UI's journal (a job's story starts with its deliveries; one
    no pool serves is kept nowhere else)."""
    if scaler.journal is None or delivery.job is None:
        return
    if result == "not_served":
        why = scaler.journal.why(delivery.job) or "no pool serves its repository and labels"
        scaler.journal.not_served(delivery.job, why, delivery.delivery_id)
    else:
        scaler.journal.delivery(delivery.job, result, delivery.delivery_id)
