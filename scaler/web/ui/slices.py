"""Work done a few milliseconds at a time, with the event loop free between:
webhooks, ``/healthz`` and the scaler's loops never wait behind a page."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any, TypeVar

import jinja2

SLICE_S = 0.003  # the most a page holds the event loop at a time
K = TypeVar("K")


async def sliced(keys: Iterable[K], redo: Callable[[K], object]) -> None:
    """``redo`` each key, giving the event loop back every ``SLICE_S`` (and
    first: what ran before, another phase of the same page, was a slice too)."""
    await asyncio.sleep(0)
    until = time.perf_counter() + SLICE_S
    for key in keys:
        redo(key)
        if time.perf_counter() > until:
            await asyncio.sleep(0)
            until = time.perf_counter() + SLICE_S


async def render(template: jinja2.Template, context: dict[str, Any]) -> str:
    """The template's output, made a slice at a time (Jinja yields it in
    small pieces: a table of a hundred rows is thousands)."""
    parts: list[str] = []
    pieces = template.generate(context)
    await asyncio.sleep(0)
    until = time.perf_counter() + SLICE_S
    while True:
        n = len(parts)
        parts += islice(pieces, 256)  # taken in C, a few hundred µs at most
        if len(parts) - n < 256:
            return "".join(parts)
        if time.perf_counter() > until:
            await asyncio.sleep(0)
            until = time.perf_counter() + SLICE_S


__all__ = ["SLICE_S", "render", "sliced"]
