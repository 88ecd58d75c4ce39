"""Host provider: each runner a sandboxed process tree on the scaler's own host.

Entry point ``host = "providers.host:HostProvider"``; for trusted
repositories only (a pool on it must list them: ``_trust``). Example config in
``examples/host/``; what the sandbox does and does not protect is in the
README ("Host provider").

* **bubblewrap** (no systemd as PID 1; the scaler runs as root): a detached
  supervisor per runner (``_supervisor``) runs bwrap with new PID, IPC, UTS
  and cgroup namespaces (and network, with ``network: none``), a fresh UID/GID
  leased from ``uid_range`` (``_uids``), only the listed host paths visible,
  a private work dir, cgroup v1 and rlimit limits (``_cgroups``, ``_launch``).
* **systemd**: a transient unit from ``systemd-run`` with ``DynamicUser=yes``
  and the rest of the hardening (``_systemd``).
* Identity lives in a state directory the provider owns (``_state``); every
  record is validated before it is believed, and teardown kills only what
  it can prove it started (``_teardown``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from providers.host._options import HostPoolOptions, HostSettings, Limits, UidRange
    from providers.host._provider import HostProvider

__all__ = ["HostPoolOptions", "HostProvider", "HostSettings", "Limits", "UidRange"]


def __getattr__(name: str) -> Any:
    # Lazy: ``python -m providers.host supervise`` (one per sandbox) must not
    # pay for pydantic, structlog and the core it never uses.
    if name == "HostProvider":
        from providers.host._provider import HostProvider

        return HostProvider
    if name in __all__:
        from providers.host import _options

        return getattr(_options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
