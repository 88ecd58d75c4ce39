"""``FakeForgeServer``: one process-local HTTP server playing one forge kind
and version, on 127.0.0.1 (port 0). Parts: ``world`` (jobs and runners as the
forges move them), ``render_*`` (the recorded shapes), ``webhooks`` (emit,
sign, flush), ``rest_gitea`` / ``rest_github`` (the REST API),
``runner_rpc`` (the runner side), ``faults`` (injected errors)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scaler.testing.fake_forge_server._base import ADMIN_TOKEN
from scaler.testing.fake_forge_server.faults import FaultMixin
from scaler.testing.fake_forge_server.runner_rpc import RunnerRpc
from scaler.testing.threaded import ThreadedServer

RPC_PREFIX = "/api/actions/runner.v1.RunnerService/"


class FakeForgeServer(RunnerRpc, FaultMixin):
    def __init__(
        self,
        kind: str = "gitea",
        version: str | None = None,
        *,
        token: str = ADMIN_TOKEN,
        app_id: int | None = None,
        app_public_key: str | None = None,
        rate_limit: int = 5000,
        rate_window: float = 3600.0,
        clock: Callable[[], float] = time.time,
        job_webhooks: bool | None = None,
        payload_repository: bool = True,
    ) -> None:
        self._init_state(kind, version, clock)
        self.token = token
        self.app_id, self.app_public_key = app_id, app_public_key
        self.installation_id = 4242
        self.installation_tokens = {}
        self.forgejo_job_webhooks, self.forgejo_payload_repository = job_webhooks, payload_repository
        self.outbox, self.sent, self.webhook_targets, self.faults = [], [], [], []
        self.rate_limit = self.rate_remaining = rate_limit
        self.rate_window = rate_window
        self.rate_reset = clock() + rate_window
        self.app = Starlette(routes=[Route("/{path:path}", self._dispatch,
                                           methods=["GET", "POST", "PATCH", "DELETE", "PUT"])])
        self._threaded: ThreadedServer | None = None
        self.port = 0

    # --- life cycle -----------------------------------------------------------

    def start(self) -> FakeForgeServer:
        self._threaded = ThreadedServer(self.app, "fake forge", lifespan="off")
        self.port = self._threaded.start()
        return self

    def stop(self) -> None:
        if self._threaded is not None:
            self._threaded.stop()

    def __enter__(self) -> FakeForgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- routing ----------------------------------------------------------------

    async def _dispatch(self, request: Request) -> Response:
        fault = await self._fault(request)
        if fault is not None:
            return fault
        path = "/" + request.path_params["path"]
        if path.startswith(RPC_PREFIX) and self.kind != "github":
            return await self._rpc(request, path[len(RPC_PREFIX):])
        if path.startswith("/_fake/github-runner/") and self.kind == "github":
            return await self._gh_runner(request, path.rsplit("/", 1)[1])
        if self.kind == "github":
            return await self._github(request, path)
        if not path.startswith("/api/v1/"):
            return JSONResponse({"message": "not found"}, status_code=404)
        if not self._authorised(request):
            return JSONResponse({"message": "token is required"}, status_code=401)
        return await self._gitea_rest(request, path[len("/api/v1"):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="run the fake forge on 127.0.0.1")
    parser.add_argument("--kind", choices=["gitea", "forgejo", "github"], default="gitea")
    parser.add_argument("--version", default=None)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    import uvicorn

    server = FakeForgeServer(args.kind, args.version)
    print(f"fake {args.kind} forge; admin token {server.token}", flush=True)
    uvicorn.run(server.app, host="127.0.0.1", port=args.port, log_level="info")
    return 0


__all__ = ["FakeForgeServer", "main"]
