"""``runner-scaler check`` for a host provider: probes, creating nothing."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from providers.host import _cgroups, _files, _state
from providers.host._options import HostPoolOptions
from providers.host._sandbox import HostView, SandboxError, resolve_packages, visible
from providers.host._uids import subid_overlaps
from scaler.provider import Finding

if TYPE_CHECKING:
    from providers.host._provider import HostProvider


def findings(p: HostProvider, pools: Mapping[str, Mapping[str, Any]]) -> list[Finding]:
    subject = f"provider {p.name}"
    out = [Finding("ok", subject, f"mode {p.mode} (configured: {p.settings.mode})")]
    out += _privileges(p, subject)
    out += _uid_range(p, subject)
    out += _dirs(p, subject)
    for pool, options in pools.items():
        out += _pool(p, f"{subject} pool {pool}", options)
    out += _records(p, subject)
    return out


def _privileges(p: HostProvider, subject: str) -> list[Finding]:
    if p.mode == "systemd":
        found = shutil.which(p.settings.systemd_run)
        if found is None:
            return [Finding("error", subject, f"{p.settings.systemd_run} not found")]
        return [Finding("ok", subject, f"transient units through {found}")]
    out = []
    if os.geteuid() != 0:
        out.append(Finding("error", subject, "bubblewrap mode runs as root (to mount, and to give each sandbox a UID)"))
    for tool in (p.settings.bwrap, p.settings.setpriv):
        if shutil.which(tool) is None:
            out.append(Finding("error", subject, f"{tool} not found (Debian: bubblewrap, util-linux)"))
    if not out:
        out.append(_probe(p, subject))
    return out


def _probe(p: HostProvider, subject: str) -> Finding:
    """A throw-away namespace: nothing is written anywhere."""
    bwrap = shutil.which(p.settings.bwrap) or p.settings.bwrap
    argv = [bwrap, "--unshare-pid", "--die-with-parent", "--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--", "/usr/bin/true"]
    try:
        run = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding("error", subject, f"bwrap does not run: {exc}")
    if run.returncode != 0:
        return Finding("error", subject, f"bwrap cannot make a sandbox here: {run.stderr.strip()[-300:]}")
    return Finding("ok", subject, f"bwrap makes sandboxes ({bwrap})")


def _uid_range(p: HostProvider, subject: str) -> list[Finding]:
    r = p.settings.uid_range
    out = [Finding("error", subject, f"uid_range overlaps {line}") for line in subid_overlaps(r)]
    known = [e.pw_name for e in pwd.getpwall() if r.first <= e.pw_uid <= r.last]
    if known:
        out.append(Finding("error", subject, f"uid_range holds accounts {', '.join(known[:5])}"))
    if p.mode == "bubblewrap" and not out:
        out.append(Finding("ok", subject, f"UIDs {r.first}..{r.last} are free of accounts and subordinate ranges"))
    return out


def _dirs(p: HostProvider, subject: str) -> list[Finding]:
    out = []
    for d in (p.settings.state_path, p.settings.work_path):
        if not d.exists():
            out.append(Finding("ok", subject, f"{d} will be created (mode 0700)"))
            continue
        try:
            _files.trusted_dir(d)
        except (OSError, _files.Untrusted) as exc:
            out.append(Finding("error", subject, str(exc)))
    return out


def _pool(p: HostProvider, subject: str, options: Mapping[str, Any]) -> list[Finding]:
    try:
        opts = HostPoolOptions.model_validate(dict(options))
    except ValidationError as exc:
        return [Finding("error", subject, f"provider_options: {exc.error_count()} problem(s)")]
    out = []
    view = HostView()
    try:
        resolve_packages(opts, view, lambda path: visible(path, opts) or p.mode == "systemd")
    except SandboxError as exc:
        out.append(Finding("error", subject, str(exc)))
    if p.mode == "bubblewrap":
        setpriv = shutil.which(p.settings.setpriv)
        if setpriv is not None and not visible(setpriv, opts):
            out.append(Finding("error", subject, f"{setpriv} is outside read_only_paths"))
        try:
            _cgroups.require(opts.limits, _cgroups.hierarchies())
        except SandboxError as exc:
            out.append(Finding("error", subject, str(exc)))
    for path in opts.bound():
        if not Path(path).exists():
            out.append(Finding("warning", subject, f"{path} does not exist on this host"))
    if not out:
        out.append(Finding("ok", subject, "sandbox options check out"))
    return out


def _records(p: HostProvider, subject: str) -> list[Finding]:
    out = []
    for name in p.layout.names():
        try:
            _state.load_record(p.layout, name)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            out.append(Finding("warning", subject, f"ignored instance record: {exc}"))
    return out
