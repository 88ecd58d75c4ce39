"""``/healthz`` (every loop alive), ``/readyz`` (rebuilt and leading), ``/metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler.app import Scaler


async def healthz(request: Request) -> Response:
    scaler: Scaler = request.app.state.scaler
    stale = scaler.heartbeats.stale()
    if stale:
        return JSONResponse({"status": "unhealthy", "stale_loops": {k: round(v, 1) for k, v in stale.items()}}, 503)
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    scaler: Scaler = request.app.state.scaler
    if not scaler.leading:
        return JSONResponse({"status": "standby", "reason": "not the leader"}, 503)
    if not scaler.ready:
        return JSONResponse({"status": "starting", "reason": "state not rebuilt yet"}, 503)
    return JSONResponse({"status": "ready"})


async def prometheus(request: Request) -> Response:
    scaler: Scaler = request.app.state.scaler
    scaler.publish_gauges()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
