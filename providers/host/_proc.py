"""What /proc says about processes: identity (PID + start time + boot), UIDs.

A PID alone names nothing for long: it is reused. A process is named here by
``(pid, starttime)`` in clock ticks since boot, and ``boot_id`` tells two
boots apart, so a record from before a reboot or a reused PID never matches.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessId:
    pid: int
    starttime: int  # /proc/<pid>/stat field 22
    boot_id: str


def boot_id() -> str:
    return (PROC / "sys/kernel/random/boot_id").read_text(encoding="ascii").strip()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (PROC / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    # comm is in parentheses and may hold spaces or ')': split after the last one
    _, _, rest = raw.rpartition(")")
    return rest.split()


def identify(pid: int) -> ProcessId | None:
    """The identity of a live (not zombie) process, or None."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return ProcessId(pid, int(fields[19]), boot_id())


def alive(ident: ProcessId) -> bool:
    return ident.boot_id == boot_id() and identify(ident.pid) == ident


def cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]]


def exe(pid: int) -> str | None:
    try:
        return os.readlink(PROC / str(pid) / "exe")
    except OSError:
        return None


def uids(pid: int) -> tuple[int, ...]:
    """Real, effective, saved and file-system UIDs (empty when gone)."""
    try:
        text = (PROC / str(pid) / "status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        if line.startswith("Uid:"):
            return tuple(int(x) for x in line.split()[1:])
    return ()


def pids() -> Iterator[int]:
    for entry in os.scandir(PROC):
        if entry.name.isdigit():
            yield int(entry.name)


def processes_of(uid: int) -> list[int]:
    """Every live process any of whose UIDs is ``uid``."""
    out = []
    for pid in pids():
        if uid in uids(pid):
            fields = _stat_fields(pid)
            if fields is not None and fields[0] not in ("Z", "X"):
                out.append(pid)
    return out


def uids_in_use() -> set[int]:
    used: set[int] = set()
    for pid in pids():
        used.update(uids(pid))
    return used


def _signal_if(pid: int, still: Callable[[], bool]) -> bool:
    """SIGKILL ``pid`` through a pidfd opened *before* re-checking that it is
    still the process meant: a PID reused in between is never signalled."""
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not still():
            return False
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        return True
    finally:
        os.close(fd)


def kill(ident: ProcessId) -> bool:
    """SIGKILL the process if it is still the one identified; whether it was."""
    return _signal_if(ident.pid, lambda: alive(ident))


def kill_uid(uid: int) -> int:
    """SIGKILL every process of ``uid`` (a sandbox UID, never a shared one)."""
    def still(pid: int) -> Callable[[], bool]:
        return lambda: uid in uids(pid)

    return sum(_signal_if(pid, still(pid)) for pid in processes_of(uid))
