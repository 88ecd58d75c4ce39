"""A fresh UID (and the equal GID) per sandbox, from a configured range.

UIDs are issued in order from a counter kept in the state directory, under
an exclusive ``flock``: a UID is given out again only after the counter has
gone round the whole range, so no two instances share one until then. Even
after a wrap a UID is skipped while it is leased (``uids/<uid>``, created
with ``O_EXCL``), while any process runs with it, or when the account
databases name it. The lease names the instance: it, not the instance's own
record, is what teardown trusts when it kills by UID.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from providers.host import _files
from providers.host._options import UidRange
from providers.host._proc import uids_in_use


class UidsExhausted(RuntimeError):
    """Every UID of the range is leased or in use."""


@dataclass(frozen=True, slots=True)
class Lease:
    uid: int
    instance: str
    controller: str


class UidAllocator:
    def __init__(self, state_dir: Path, uid_range: UidRange) -> None:
        self.dir = state_dir / "uids"
        self.range = uid_range

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        _files.ensure_dir(self.dir)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _counter(self) -> int:
        try:
            value = _files.read_json(self.dir / "next")
        except FileNotFoundError:
            return 0
        return value if isinstance(value, int) and value >= 0 else 0

    def acquire(self, instance: str, controller: str) -> int:
        with self._locked():
            counter = self._counter()
            busy = uids_in_use()
            for step in range(self.range.count):
                uid = self.range.first + (counter + step) % self.range.count
                if uid in busy or named(uid):
                    continue
                if _files.create_exclusive(self.dir / str(uid), {"instance": instance, "controller": controller}):
                    _files.write_json(self.dir / "next", counter + step + 1)
                    return uid
        raise UidsExhausted(f"no free UID in {self.range.first}..{self.range.last}")

    def lease(self, uid: int) -> Lease | None:
        """The validated lease of ``uid``, or None (absent, foreign or out of range)."""
        if uid not in self.range:
            return None
        try:
            data = _files.read_json(self.dir / str(uid))
        except (OSError, _files.Untrusted):
            return None
        if not (isinstance(data, dict) and isinstance(data.get("instance"), str)):
            return None
        return Lease(uid, data["instance"], str(data.get("controller", "")))

    def leases(self) -> list[Lease]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        found = (self.lease(int(n)) for n in names if n.isdigit())
        return [lease for lease in found if lease is not None]

    def leases_of(self, instance: str, controller: str | None = None) -> list[Lease]:
        """The leases naming ``instance`` (and, when given, made by ``controller``)."""
        return [
            lease for lease in self.leases()
            if lease.instance == instance and controller in (None, lease.controller)
        ]

    def release(self, lease: Lease) -> None:
        with self._locked():
            current = self.lease(lease.uid)
            if current is not None and current.instance == lease.instance:
                (self.dir / str(lease.uid)).unlink(missing_ok=True)


def named(uid: int) -> bool:
    """Whether the account databases (passwd, group) know this id."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def subid_overlaps(uid_range: UidRange, files: tuple[str, ...] = ("/etc/subuid", "/etc/subgid")) -> list[str]:
    """Entries of /etc/subuid and /etc/subgid (user namespaces of rootless
    containers) whose range meets ours: their processes could carry our UIDs."""
    out = []
    for path in files:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            parts = line.strip().split(":")
            if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
                continue
            start, count = int(parts[1]), int(parts[2])
            if start <= uid_range.last and uid_range.first < start + count:
                out.append(f"{path}: {line.strip()}")
    return out
