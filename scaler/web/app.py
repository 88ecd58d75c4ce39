"""The Starlette application; its lifespan starts and stops the Scaler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from scaler.app import Scaler
from scaler.web import api, health, webhooks


def create_app(scaler: Scaler) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await scaler.start()
        try:
            yield
        finally:
            await scaler.stop()

    app = Starlette(
        routes=[
            Route("/webhooks/{forge}", webhooks.receive, methods=["POST"]),
            Route("/healthz", health.healthz),
            Route("/readyz", health.readyz),
            Route("/metrics", health.prometheus),
            Route("/api/v1/pools", api.pools),
            Route("/api/v1/pools/{name}", api.pool),
            Route("/api/v1/instances", api.instances),
        ],
        lifespan=lifespan,
    )
    app.state.scaler = scaler
    return app
