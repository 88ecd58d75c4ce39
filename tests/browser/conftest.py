"""Fixtures for the browser suite: chromium through Playwright, with every
console message, page error and CSP violation recorded, and every response
body kept so the tests can look for secrets in what the server sent."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import CHROMIUM_ARGS, artifacts_dir, chromium

# Recorded before any page script runs (Playwright injects it through the
# DevTools protocol, which the page's CSP does not govern).
_CSP_PROBE = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline'));
});
"""


@dataclass
class Watched:
    """A page and everything it reported."""

    page: Any
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bodies: list[tuple[str, str]] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        found: list[str] = self.page.evaluate("window.__csp || []")
        logged = [text for kind, text in self.console if "Content Security Policy" in text]
        return found + logged

    def console_errors(self) -> list[str]:
        return [text for kind, text in self.console if kind == "error"]


class Browser:
    def __init__(self, context: Any) -> None:
        self.context = context
        context.add_init_script(_CSP_PROBE)

    def page(self) -> Watched:
        page = self.context.new_page()
        watched = Watched(page)
        page.on("console", lambda m: watched.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: watched.errors.append(str(e)))

        def keep(response: Any) -> None:
            with contextlib.suppress(Exception):  # a redirect or an aborted request has no body
                watched.bodies.append((response.url, response.text()))

        page.on("response", keep)
        return watched


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Browser]:
    """A fresh chromium profile per test; credentials from the test's
    ``http_credentials`` marker, if any."""
    from playwright.sync_api import sync_playwright

    marker = request.node.get_closest_marker("http_credentials")
    creds = marker.args[0] if marker else None
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium(),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1500, "height": 1000},
            http_credentials=creds,
            timezone_id="UTC",
        )
        try:
            yield Browser(context)
        finally:
            context.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "http_credentials(creds): basic credentials for the browser fixture")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    shots = artifacts_dir()
    if shots.is_dir() and any(shots.glob("*.png")):
        terminalreporter.write_line(f"browser screenshots: {shots}")
