"""``/healthz`` (every loop alive), ``/readyz`` (leader rebuilt, or follower electing), ``/metrics``."""

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
    """Every healthy replica is ready, so a rolling update and a PDB count it:
    the leader once its start-up rebuild is done, a follower while it takes
    part in the election (it forwards what it receives to the leader)."""
    scaler: Scaler = request.app.state.scaler
    if scaler.leading:
        if not scaler.ready:
            return JSONResponse({"status": "starting", "reason": "state not rebuilt yet"}, 503)
        return JSONResponse({"status": "ready", "role": "leader"})
    if not scaler.campaigning:
        return JSONResponse({"status": "stopped", "reason": "leader election is not running"}, 503)
    return JSONResponse({"status": "ready", "role": "follower"})


async def prometheus(request: Request) -> Response:
    scaler: Scaler = request.app.state.scaler
    scaler.publish_gauges()
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
