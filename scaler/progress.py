"""Progress marks: a loop is alive while its pass gets answers, not only when
a pass ends.

A resync pass paging 5,000 runners and 5,000 jobs through a slow forge can
outlive three resync intervals; judged by finished passes alone, ``/healthz``
answered 503 for a scaler that was working. Every forge exchange that ends
(an answer or an error) marks progress for the loop whose pass made it;
a pass stuck on nothing that answers marks none, and goes stale.

No imports from the rest of the core: the forge HTTP layer uses this.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

_hook: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar("scaler_progress", default=None)


def mark() -> None:
    """The current pass got somewhere (one page of a listing answered)."""
    hook = _hook.get()
    if hook is not None:
        hook()


@contextlib.contextmanager
def reporting_to(hook: Callable[[], None]) -> Iterator[None]:
    """Marks made in this block (and in tasks it starts and waits for) call ``hook``."""
    token = _hook.set(hook)
    try:
        yield
    finally:
        _hook.reset(token)


def detached() -> contextvars.Context:
    """A context whose marks reach no one: for background tasks a pass starts
    and does not wait for (launches, teardowns), which are not its progress."""
    ctx = contextvars.copy_context()
    ctx.run(_hook.set, None)
    return ctx
