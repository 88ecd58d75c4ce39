"""bubblewrap mode, end: kill the whole tree, then remove everything it made.

What is killed, and why each is safe against a hostile or stale state file:

1. the supervisor and bwrap named in ``runtime.json``, only while each is
   still that process (PID + start time + boot id, through a pidfd) *and*
   looks like what we started (the supervisor module with this instance's
   directory; the bwrap binary with this instance's work directory). Killing
   either makes the kernel kill the sandbox's whole PID namespace;
2. then every process of the instance's UID, until none is left. The UID
   comes from the lease (``uids/<uid>`` naming this instance, inside the
   configured range), never from the instance's own record.

Then, in this order (so a crash part-way leaves something ``delete`` finds
again): the cgroups (``…/runner-scaler-host/<name>`` only), the UID's files
under the pool's read-write paths, the work directory, the UID lease, and
last the instance's state directory.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from providers.host import _cgroups, _files, _proc
from providers.host._state import Ident, Layout, Record, load_runtime
from providers.host._uids import Lease, UidAllocator


class Leftover(RuntimeError):
    """Something of the sandbox could not be removed yet (retry the delete)."""


def is_supervisor(ident: Ident, inst_dir: Path) -> bool:
    args = _proc.cmdline(ident.pid)
    return _proc.alive(ident.process()) and args[-3:] == ["providers.host", "supervise", str(inst_dir)]


def is_bwrap(ident: Ident, bwrap: str, work: Path) -> bool:
    exe = _proc.exe(ident.pid)
    ok_exe = exe is not None and os.path.realpath(exe) == os.path.realpath(bwrap)
    return _proc.alive(ident.process()) and ok_exe and str(work) in _proc.cmdline(ident.pid)


def supervisor_alive(layout: Layout, name: str) -> bool:
    rt = load_runtime(layout, name)
    return rt is not None and is_supervisor(rt.supervisor, layout.dir(name))


def kill_tree(layout: Layout, name: str, bwrap: str) -> None:
    rt = load_runtime(layout, name)
    if rt is None:
        return
    if is_supervisor(rt.supervisor, layout.dir(name)):
        _proc.kill(rt.supervisor.process())
    if is_bwrap(rt.bwrap, bwrap, layout.work(name)):
        _proc.kill(rt.bwrap.process())


def kill_uids(leases: list[Lease], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for lease in leases for pid in _proc.processes_of(lease.uid)]
        if not left:
            return
        if time.monotonic() > deadline:
            raise Leftover(f"processes {left[:10]} of the sandbox's UID survive after {timeout:g}s")
        for lease in leases:
            _proc.kill_uid(lease.uid)
        time.sleep(0.02)


def teardown(layout: Layout, uids: UidAllocator, name: str, record: Record | None, *, bwrap: str,
             timeout: float, controller: str) -> None:
    """Blocking (run it in a thread); Leftover when something remains."""
    kill_tree(layout, name, bwrap)
    leases = uids.leases_of(name, controller)
    kill_uids(leases, timeout)
    if record is not None:
        left = _cgroups.remove([Path(c) for c in record.cgroups], name)
        if left:
            raise Leftover(f"cgroups remain: {'; '.join(left)}")
        for top in record.sweep:
            for lease in leases:
                _files.sweep(Path(top), lease.uid)
    _files.remove_tree(layout.work_base(name))
    for lease in leases:
        uids.release(lease)
    _files.remove_tree(layout.dir(name))
