"""The Starlette application; its lifespan starts and stops the Scaler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from scaler.app import Scaler
from scaler.web import api, health, webhooks
from scaler.web.forward import Forwarder


def create_app(scaler: Scaler) -> Starlette:
    ui = None
    if scaler.config.ui.on:
        from scaler.web.ui import UI  # Jinja2 and the templates only when the UI is on

        ui = UI(scaler)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await scaler.start()
        if ui is not None:
            await ui.start()
        try:
            yield
        finally:
            if ui is not None:
                await ui.stop()
            await scaler.stop()
            await forwarder.aclose()

    routes: list[BaseRoute] = [
        Route("/webhooks/{forge}", webhooks.receive, methods=["POST"]),
        Route("/healthz", health.healthz),
        Route("/readyz", health.readyz),
        Route("/metrics", health.prometheus),
        Route("/api/v1/pools", api.pools),
        Route("/api/v1/pools/{name}", api.pool),
        Route("/api/v1/forges", api.forges),
        Route("/api/v1/instances", api.instances),
    ]
    if ui is not None:
        routes.append(ui.mount())
    app = Starlette(routes=routes, lifespan=lifespan)
    forwarder = Forwarder(scaler)
    app.state.scaler = scaler
    app.state.forwarder = forwarder
    app.state.ui = ui  # its history and caches, for tests and benchmarks
    return app
