"""The sandbox, as data: what it sees, where the credentials go, its PATH.

Pure functions of the pool's options, the launch and a view of the host's
file system (``HostView``, injectable), shared by both modes: ``_bwrap``
turns a :class:`Sandbox` into a bubblewrap command line, ``_systemd`` into a
``systemd-run`` one.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from providers.host._options import KERNEL_FS, HostPoolOptions, under
from scaler.provider import CredentialFile, LaunchSpec

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxError(ValueError):
    """The launch cannot be placed in this pool's sandbox (a permanent error)."""


class HostView:
    """What the sandbox builder asks of the host's file system."""

    def kind(self, path: str) -> str | None:
        """'dir', 'file' (anything else that is not a symlink), 'link' or None (absent)."""
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return "link"
        return "dir" if stat.S_ISDIR(mode) else "file"

    def readlink(self, path: str) -> str:
        return os.readlink(path)

    def realpath(self, path: str) -> str:
        return os.path.realpath(path)

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def executable(self, path: str) -> bool:
        return os.path.isfile(path) and os.access(path, os.X_OK)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one credential file lives on the host and inside the sandbox."""

    file: CredentialFile
    host: Path  # written (owner: the sandbox's UID, its mode) before start
    bind: bool  # True: bind-mounted read-only at file.path; False: inside the work dir


@dataclass(frozen=True, slots=True)
class Sandbox:
    opts: HostPoolOptions
    work: Path  # host path of the work dir (mounted at opts.workdir)
    placements: tuple[Placement, ...]
    path_dirs: tuple[str, ...]  # package directories, first on PATH
    hidden_files: tuple[str, ...] = ()
    hidden_dirs: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def visible(path: str, opts: HostPoolOptions) -> bool:
    """Whether a host path would be visible inside the bubblewrap sandbox."""
    return any(under(path, b) for b in opts.bound()) and not any(under(path, h) for h in opts.hidden())


def place_files(files: tuple[CredentialFile, ...], opts: HostPoolOptions, work: Path, store: Path) -> list[Placement]:
    out = []
    for i, f in enumerate(files):
        path = posixpath.normpath(f.path)
        if not f.path.startswith("/") or path != f.path:
            raise SandboxError(f"credential file {f.path!r}: not a normalised absolute path")
        if under(path, opts.workdir) and path != opts.workdir:
            out.append(Placement(f, work / posixpath.relpath(path, opts.workdir), bind=False))
            continue
        clash = [p for p in (*opts.bound(), *opts.hidden(), "/proc", "/dev") if under(path, p) or under(p, path)]
        if clash:
            raise SandboxError(
                f"credential file {path}: inside (or over) {clash[0]}, where the sandbox cannot place a file; "
                f"put it under the work dir {opts.workdir}, /run or a path of its own"
            )
        out.append(Placement(f, store / str(i), bind=True))
    return out


def resolve_packages(opts: HostPoolOptions, view: HostView, sees: Callable[[str], bool]) -> list[str]:
    """The directory of each package command, as the sandbox (``sees``) sees it."""
    dirs: list[str] = []
    for pkg in opts.packages:
        found = pkg if pkg.startswith("/") else view.which(pkg)
        if found is None or not view.executable(found):
            raise SandboxError(f"packages: {pkg!r} is not an executable on this host")
        candidates = [found, view.realpath(found)]
        seen = [c for c in candidates if sees(c)]
        if not seen:
            raise SandboxError(
                f"packages: {pkg!r} is {found} (really {candidates[1]}), which the sandbox cannot see; "
                "add its directory to read_only_paths"
            )
        d = posixpath.dirname(seen[0])
        if d not in dirs:
            dirs.append(d)
    return dirs


def hidden_split(opts: HostPoolOptions, view: HostView) -> tuple[list[str], list[str]]:
    """The hidden paths that would otherwise be visible, as (files, dirs)."""
    files, dirs = [], []
    for h in opts.hidden():
        for p in dict.fromkeys((h, view.realpath(h))):
            if not any(under(p, b) for b in opts.bound()) or any(under(p, r) for r in KERNEL_FS):
                continue
            kind = view.kind(p)
            if kind == "dir":
                dirs.append(p)
            elif kind == "file":
                files.append(p)
    return files, dirs


def sandbox_env(spec: LaunchSpec, opts: HostPoolOptions, path_dirs: list[str]) -> dict[str, str]:
    """The whole environment inside: nothing of the scaler's own (its
    ``*_env`` secrets among it) leaks in."""
    env = {
        "HOME": opts.workdir,
        "USER": "runner",
        "LOGNAME": "runner",
        "PATH": ":".join([*path_dirs, BASE_PATH]),
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
    }
    env.update(spec.env)
    return env


def build(
    spec: LaunchSpec,
    opts: HostPoolOptions,
    *,
    work: Path,
    store: Path,
    view: HostView,
    sees: Callable[[str], bool] | None = None,
) -> Sandbox:
    """The sandbox for ``spec``; ``sees`` says what is visible (default: bubblewrap's rule)."""
    placements = place_files(spec.files, opts, work, store)
    path_dirs = resolve_packages(opts, view, sees or (lambda p: visible(p, opts)))
    hidden_files, hidden_dirs = hidden_split(opts, view)
    return Sandbox(
        opts=opts,
        work=work,
        placements=tuple(placements),
        path_dirs=tuple(path_dirs),
        hidden_files=tuple(hidden_files),
        hidden_dirs=tuple(hidden_dirs),
        env=sandbox_env(spec, opts, path_dirs),
    )
