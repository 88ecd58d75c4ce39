"""Read-only JSON API: pools (what KEDA's metrics-api scaler reads) and instances."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scaler.app import Scaler


class _JSON(JSONResponse):
    # orjson: /api/v1/instances with thousands of instances renders in a
    # fraction of json.dumps' time, time the event loop does nothing else.
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def pools(request: Request) -> Response:
    scaler: Scaler = request.app.state.scaler
    return _JSON({"pools": list(scaler.pool_stats().values())})


async def pool(request: Request) -> Response:
    scaler: Scaler = request.app.state.scaler
    name = request.path_params["name"]
    stats = scaler.pool_stats().get(name)
    if stats is None:
        return JSONResponse({"error": f"no pool named {name!r}"}, status_code=404)
    return JSONResponse(stats)


async def instances(request: Request) -> Response:
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
