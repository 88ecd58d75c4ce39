"""``/ui``: read-only operator pages, served by the scaler itself.

Server-rendered (Jinja2, autoescaped) with htmx 2 (vendored in ``static/``)
fetching each page's live part again every ``ui.refresh``: no build step, no
inline script or style, nothing the browser renders from JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, Router
from starlette.staticfiles import StaticFiles

from scaler.app import Scaler
from scaler.loops import guarded_loop
from scaler.web.ui import jobs as job_views
from scaler.web.ui import views
from scaler.web.ui.charts import Chart
from scaler.web.ui.gate import Gate, credentials, is_loopback
from scaler.web.ui.history import History, take_sample
from scaler.web.ui.index import Indexes
from scaler.web.ui.probes import Probes
from scaler.web.ui.slices import render

HERE = Path(__file__).parent
HTMX = "htmx-2.0.11.min.js"
SAMPLER = "ui-sampler"
POOL_ROWS = 50  # pools per overview page: each row carries two charts


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped; nothing is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    return env


def _num(value: object) -> Markup:
    """A count for a table cell: zero and none greyed out."""
    if value is None:
        return Markup('<span class="zero">—</span>')
    if value == 0:
        return Markup('<span class="zero">0</span>')
    return escape(value)


class UI:
    def __init__(self, scaler: Scaler) -> None:
        self.scaler = scaler
        self.settings = scaler.config.ui
        self.history = History(self.settings.sample_interval)
        self.probes = Probes(scaler, self.settings.check_interval)
        self.indexes = Indexes(scaler)
        self.env = _env()
        self._task: asyncio.Task[None] | None = None

    # --- life cycle (the web app's lifespan) -------------------------------

    def compile(self) -> None:
        """Compile every template now, not in the first refresh of each page."""
        for name in self.env.list_templates():
            self.env.get_template(name)

    async def start(self) -> None:
        self.compile()

        async def sample() -> None:
            await take_sample(self.scaler, self.history, self.indexes, self._spark)

        loop = guarded_loop(SAMPLER, self.settings.sample_interval, sample, self.scaler.heartbeats)
        self._task = asyncio.create_task(loop, name=SAMPLER)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.scaler.heartbeats.unregister(SAMPLER)
        await self.probes.close()

    def _spark(self, c: Chart, kind: str, label: str) -> Markup:
        """A chart drawn by the templates' own (autoescaped) macro."""
        drawn = self.env.get_template("_macros.html").module.spark(c, kind, label)  # type: ignore[attr-defined]
        assert isinstance(drawn, Markup)  # the autoescaping engine's own output, escaped as it was made
        return drawn

    # --- routes ------------------------------------------------------------

    def mount(self) -> Mount:
        router = Router(
            routes=[
                Route("/", self.overview),
                Route("/instances", self.instances),
                Route("/jobs", self.jobs),
                Route("/jobs/{forge}/{job_id:int}", self.job),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ]
        )
        return Mount("/ui", app=Gate(router, self.settings, credentials(self.settings)))

    async def _render(self, request: Request, page: str, context: dict[str, Any], status: int = 200) -> Response:
        live = request.headers.get("hx-request") == "true"
        query = request.url.query
        scaler = self.scaler
        context = {
            **context,
            "page": page,
            "controller": scaler.config.controller_id,
            "refresh": f"{round(self.settings.refresh * 1000)}ms",
            "live_url": request.url.path + (f"?{query}" if query else ""),
            "htmx": HTMX,
            "leading": scaler.leading,
            "ready": scaler.ready,
            "journal_size": len(scaler.journal) if scaler.journal is not None else 0,
            "journal_max": self.settings.journal_jobs,
        }
        name = f"_{page}.html" if live else f"{page}.html"
        body = await render(self.env.get_template(name), context)
        response = HTMLResponse(body, status_code=status)
        response.headers["vary"] = "HX-Request"
        return response

    # Each page first catches the indexes up (a few ms of work at a time,
    # shared by every tab), then reads only the rows it shows.

    async def overview(self, request: Request) -> Response:
        self.probes.ask()
        await self.indexes.catch_up()
        data = await views.overview(self.scaler, self.indexes, self.history, self.probes, _page(request), POOL_ROWS)
        return await self._render(request, "overview", data)

    async def instances(self, request: Request) -> Response:
        pool, state = _param(request, "pool"), _param(request, "state")
        await self.indexes.catch_up()
        data = await views.instances(
            self.scaler, self.indexes.instances, pool, state, _page(request), self.settings.page_rows
        )
        return await self._render(request, "instances", data)

    async def jobs(self, request: Request) -> Response:
        pool, state = _param(request, "pool"), _param(request, "state")
        await self.indexes.catch_up()
        data = await job_views.jobs(self.scaler, self.indexes, state, pool, _page(request), self.settings.page_rows)
        return await self._render(request, "jobs", data)

    async def job(self, request: Request) -> Response:
        forge, job_id = request.path_params["forge"], request.path_params["job_id"]
        await self.indexes.catch_up()
        data = job_views.story(self.scaler, self.indexes, forge, job_id)
        if data is None:
            return PlainTextResponse(
                f"no job {job_id} of forge {forge!r} is known (the journal keeps recent jobs only)\n", 404
            )
        return await self._render(request, "job", data)


def _param(request: Request, name: str) -> str | None:
    # Only used to compare with known names; bounded so a hostile URL is cheap.
    value = request.query_params.get(name, "")[:100]
    return value or None


def _page(request: Request) -> int:
    """``?page=N`` (from 1); anything else is the first page."""
    value = request.query_params.get("page", "")[:9]
    return int(value) if value.isdigit() and value.isascii() else 1


def ui_warnings(scaler: Scaler, host: str) -> list[str]:
    """What ``serve`` logs at start about how the UI is exposed."""
    ui = scaler.config.ui
    if ui.enabled is True and ui.auth is None and not is_loopback(host):
        return ["ui.enabled is true without ui.auth on a non-loopback listener: anyone who reaches it can read /ui"]
    return []


__all__ = ["UI", "ui_warnings"]
