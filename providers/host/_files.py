"""File-system helpers that distrust what they read and where they write.

State files are written atomically by this process (its own UID, mode 0600)
and read back only when they still are: a regular file, not a symlink, owned
by us, writable by nobody else, in a directory that is also ours. Removal of
directories a sandbox could write uses ``shutil.rmtree``'s file-descriptor
walk (no symlink is followed) and runs only after every process of the
sandbox's UID is gone, so nothing moves underneath it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_STATE_BYTES = 64 * 1024


class Untrusted(ValueError):
    """A state file or directory we did not write, or that others could change."""


def _trusted_stat(st: os.stat_result, path: Path, *, kind: int) -> None:
    if stat.S_IFMT(st.st_mode) != kind:
        raise Untrusted(f"{path}: not a {'directory' if kind == stat.S_IFDIR else 'regular file'}")
    if st.st_uid != os.geteuid():
        raise Untrusted(f"{path}: owned by uid {st.st_uid}, not by this process ({os.geteuid()})")
    if st.st_mode & 0o022:
        raise Untrusted(f"{path}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})")


def trusted_dir(path: Path) -> None:
    _trusted_stat(os.lstat(path), path, kind=stat.S_IFDIR)


def ensure_dir(path: Path, mode: int = 0o700) -> None:
    """Create (with parents) and check a directory of ours."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    trusted_dir(path)


def write_json(path: Path, data: Any) -> None:
    """Atomically replace ``path`` (mode 0600, fsynced) with ``data``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"), sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a state file of ours; Untrusted if it is not one, OSError if absent."""
    trusted_dir(path.parent)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        _trusted_stat(os.fstat(fh.fileno()), path, kind=stat.S_IFREG)
        raw = fh.read(MAX_STATE_BYTES + 1)
    if len(raw) > MAX_STATE_BYTES:
        raise Untrusted(f"{path}: larger than {MAX_STATE_BYTES} bytes")
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise Untrusted(f"{path}: not JSON ({exc})") from None


def create_exclusive(path: Path, data: Any) -> bool:
    """Create ``path`` only if it does not exist (O_EXCL); whether we did."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def remove_tree(path: Path) -> None:
    """Remove a directory tree without following symlinks; missing is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        assert shutil.rmtree.avoids_symlink_attacks
        shutil.rmtree(path)
    else:
        path.unlink()


def owned_by(top: Path, uid: int) -> Iterator[str]:
    """Paths under ``top`` (one file system, no symlink followed) owned by ``uid``."""
    for root, dirs, files, dirfd in _walk(top):
        for name in [*dirs, *files]:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_uid == uid:
                    yield os.path.join(root, name)


def sweep(top: Path, uid: int) -> int:
    """Remove everything under ``top`` owned by ``uid`` (a directory of it whole)."""
    removed = 0
    for _root, dirs, files, dirfd in _walk(top):
        for name in list(dirs):
            with contextlib.suppress(FileNotFoundError):
                if os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_uid == uid:
                    dirs.remove(name)
                    shutil.rmtree(name, dir_fd=dirfd)
                    removed += 1
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_uid == uid:
                    os.unlink(name, dir_fd=dirfd)
                    removed += 1
    return removed


def _walk(top: Path) -> Iterator[tuple[str, list[str], list[str], int]]:
    try:
        device = os.lstat(top).st_dev
    except FileNotFoundError:
        return
    for root, dirs, files, dirfd in os.fwalk(top, follow_symlinks=False):
        # stay on one file system: a mount below is somebody else's
        dirs[:] = [d for d in dirs if _same_device(d, dirfd, device)]
        yield root, dirs, files, dirfd


def _same_device(name: str, dirfd: int, device: int) -> bool:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_dev == device
    except FileNotFoundError:
        return False
