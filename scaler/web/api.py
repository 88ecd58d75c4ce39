"""Read-only JSON API: pools (what KEDA's metrics-api scaler reads), forges and instances."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler.app import Scaler
from scaler.web.forward import FORWARDED_BY, Forwarder


async def _from_leader(request: Request) -> Response | None:
    """On a follower, the leader's answer (a follower holds no state); None
    on the leader. So KEDA's metrics-api scaler and ``status`` may use the
    Service, whichever replica answers."""
    scaler: Scaler = request.app.state.scaler
    if scaler.leading:
        return None
    if FORWARDED_BY in request.headers:
        return JSONResponse({"error": "this replica is not the leader"}, status_code=503)
    headers = {k.lower(): v for k, v in request.headers.items()}
    forwarder: Forwarder = request.app.state.forwarder
    return await forwarder.forward("GET", request.url.path, headers, b"", query=request.url.query)


class _JSON(JSONResponse):
    # orjson: /api/v1/instances with thousands of instances renders in a
    # fraction of json.dumps' time, time the event loop does nothing else.
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def pools(request: Request) -> Response:
    if (answer := await _from_leader(request)) is not None:
        return answer
    scaler: Scaler = request.app.state.scaler
    return _JSON({"pools": list(scaler.pool_stats().values())})


async def pool(request: Request) -> Response:
    if (answer := await _from_leader(request)) is not None:
        return answer
    scaler: Scaler = request.app.state.scaler
    name = request.path_params["name"]
    stats = scaler.pool_stats().get(name)
    if stats is None:
        return JSONResponse({"error": f"no pool named {name!r}"}, status_code=404)
    return JSONResponse(stats)


async def forges(request: Request) -> Response:
    if (answer := await _from_leader(request)) is not None:
        return answer
    scaler: Scaler = request.app.state.scaler
    return JSONResponse(scaler.forge_stats())


async def instances(request: Request) -> Response:
    if (answer := await _from_leader(request)) is not None:
        return answer
    scaler: Scaler = request.app.state.scaler
    items = [
        {
            "name": i.name,
            "pool": i.pool,
            "provider": i.provider,
            "state": str(i.state),
            "runner_id": i.runner_id,
            "job_id": i.job_id,
            "created_at": i.created_at,
            "updated_at": i.updated_at,
            "attempts": i.attempts,
            "last_error": i.last_error,
            "retire_reason": i.retire_reason,
        }
        for i in scaler.store.instances.values()
    ]
    return _JSON({"instances": items})
