"""The supervisor of one sandbox: ``python -m providers.host supervise DIR``.

Started by the provider's ``create``; it forks at once. The parent (the
*starter*) waits for one JSON line from the child — ``{"ok": true, ...}``
once bubblewrap reports the sandbox's PID 1, or ``{"ok": false, "error": …}``
— prints it and exits, so the scaler never has a long-lived child and a
scaler restart leaves every sandbox running. The child (the *supervisor*,
its own session) joins the instance's cgroups, sets the resource limits it
passes on, runs bwrap with ``--die-with-parent`` (so killing the supervisor
ends the sandbox), copies the runner's output into ``output.log`` up to a
cap, kills the sandbox at the ``max_lifetime`` deadline, and records the
outcome in ``result.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from providers.host import _files
from providers.host._proc import identify

STATUS_FD = "@STATUS_FD@"  # placeholder in the plan's argv for bwrap's --json-status-fd


@dataclass(frozen=True, slots=True)
class Plan:
    """What the provider asks the supervisor to run (``plan.json``).

    A plain dataclass checked by hand: the supervisor imports nothing but the
    standard library, so it starts in tens of milliseconds."""

    name: str
    argv: list[str]
    env: dict[str, str]
    deadline: float | None = None
    cgroup_procs: list[str] = field(default_factory=list)
    oom_control: str | None = None
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)
    log_max_bytes: int = 8 << 20
    start_timeout: float = 30.0

    @classmethod
    def from_json(cls, data: object) -> Plan:
        if not isinstance(data, dict) or set(data) - {f.name for f in fields(cls)}:
            raise ValueError("plan.json: not a plan")
        argv, env = data.get("argv"), data.get("env")
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ValueError("plan.json: argv")
        if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ValueError("plan.json: env")
        limits = {str(k): (int(v[0]), int(v[1])) for k, v in dict(data.get("rlimits") or {}).items()}
        if not set(limits) <= RLIMITS:
            raise ValueError("plan.json: rlimits")
        deadline = data.get("deadline")
        return cls(
            name=str(data["name"]), argv=argv, env=env,
            deadline=float(deadline) if deadline is not None else None,
            cgroup_procs=[str(p) for p in data.get("cgroup_procs") or []],
            oom_control=str(data["oom_control"]) if data.get("oom_control") else None,
            rlimits=limits, log_max_bytes=int(data.get("log_max_bytes", 8 << 20)),
            start_timeout=float(data.get("start_timeout", 30.0)),
        )


RLIMITS = {"CORE", "NPROC", "NOFILE", "FSIZE"}


class _Run:
    """The state of one supervised bwrap."""

    def __init__(self, plan: Plan, inst: Path, ready_fd: int) -> None:
        self.plan, self.inst, self.ready_fd = plan, inst, ready_fd
        self.exit_code: int | None = None
        self.reason: str | None = None
        self.sandbox_pid: int | None = None
        self.logged = 0
        self.dropped = 0
        self.log = os.open(inst / "output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        self.buffer = b""

    def say(self, word: dict[str, object]) -> None:
        if self.ready_fd < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self.ready_fd, (json.dumps(word) + "\n").encode())
            os.close(self.ready_fd)
        self.ready_fd = -1

    def output(self, data: bytes) -> None:
        room = max(0, self.plan.log_max_bytes - self.logged)
        if room:
            os.write(self.log, data[:room])
            self.logged += min(room, len(data))
        self.dropped += max(0, len(data) - room)

    def status(self, data: bytes, child: subprocess.Popen[bytes], supervisor: dict[str, object] | None) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if "child-pid" in doc:
                    self.sandbox_pid = int(doc["child-pid"])
                    _write_runtime(self.inst, supervisor, child.pid, self.sandbox_pid)
                    self.say({"ok": True, "supervisor_pid": os.getpid(), "bwrap_pid": child.pid})
                if "exit-code" in doc:
                    self.exit_code = int(doc["exit-code"])

    def tail(self) -> str:
        with open(self.inst / "output.log", "rb") as fh:
            fh.seek(max(0, os.fstat(fh.fileno()).st_size - 1500))
            return fh.read().decode("utf-8", "replace").strip()


def _ident(pid: int) -> dict[str, object] | None:
    ident = identify(pid)
    return None if ident is None else {"pid": ident.pid, "starttime": ident.starttime, "boot_id": ident.boot_id}


def _write_runtime(inst: Path, supervisor: dict[str, object] | None, bwrap_pid: int, sandbox_pid: int | None) -> None:
    bwrap = _ident(bwrap_pid)
    if supervisor is None or bwrap is None:
        return  # bwrap is gone already (a failed set-up): nothing runs to be named
    _files.write_json(inst / "runtime.json", {"supervisor": supervisor, "bwrap": bwrap, "sandbox_pid": sandbox_pid})


def _confine(plan: Plan) -> None:
    """In bwrap's process, before exec: join the instance's cgroups and set
    the limits the sandbox inherits (the supervisor itself stays outside)."""
    for procs in plan.cgroup_procs:
        with open(procs, "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))
    for name, (soft, hard) in plan.rlimits.items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (soft, hard))


def _start(plan: Plan, status_w: int, out_w: int) -> subprocess.Popen[bytes]:
    argv = [str(status_w) if a == STATUS_FD else a for a in plan.argv]
    # preexec_fn is safe here: the supervisor is single-threaded
    return subprocess.Popen(
        argv,
        env=plan.env,
        stdin=subprocess.DEVNULL,
        stdout=out_w,
        stderr=out_w,
        pass_fds=(status_w,),
        cwd="/",
        preexec_fn=lambda: _confine(plan),
    )


def supervise(plan: Plan, inst: Path, ready_fd: int) -> None:
    run = _Run(plan, inst, ready_fd)
    status_r, status_w = os.pipe()
    out_r, out_w = os.pipe()
    child = _start(plan, status_w, out_w)
    os.close(status_w)
    os.close(out_w)
    supervisor = _ident(os.getpid())
    _write_runtime(inst, supervisor, child.pid, None)
    sel = selectors.DefaultSelector()
    sel.register(status_r, selectors.EVENT_READ, "status")
    sel.register(out_r, selectors.EVENT_READ, "out")
    while sel.get_map():
        if plan.deadline is not None and run.reason is None and time.time() >= plan.deadline:
            child.kill()
            run.reason = "max_lifetime"
        wait = 1.0 if plan.deadline is None else max(0.0, min(1.0, plan.deadline - time.time()))
        for key, _ in sel.select(wait):
            data = os.read(key.fd, 65536)
            if not data:
                sel.unregister(key.fd)
                os.close(key.fd)
            elif key.data == "out":
                run.output(data)
            else:
                run.status(data, child, supervisor)
    code = child.wait()
    _finish(run, code)


def _oom_killed(plan: Plan) -> bool:
    if plan.oom_control is None:
        return False
    with contextlib.suppress(OSError, ValueError):
        for line in Path(plan.oom_control).read_text(encoding="ascii").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and int(value) > 0:
                return True
    return False


def _finish(run: _Run, code: int) -> None:
    if run.dropped:
        os.write(run.log, f"\n[runner-scaler: {run.dropped} bytes of output dropped]\n".encode())
    if run.exit_code is None and run.reason is None:
        run.reason = f"sandbox setup failed (bwrap exit {code}): {run.tail()[-500:]}"
    elif _oom_killed(run.plan):
        run.reason = "OOMKilled"
    exit_code = run.exit_code if run.exit_code is not None else code
    _files.write_json(run.inst / "result.json", {"exit_code": exit_code, "reason": run.reason,
                                                 "finished_at": time.time()})
    run.say({"ok": False, "error": run.reason or f"the runner exited at once ({exit_code})"})


def _starter(ready_r: int, timeout: float) -> int:
    """Wait for the supervisor's first word and print it."""
    sel = selectors.DefaultSelector()
    sel.register(ready_r, selectors.EVENT_READ)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data and time.monotonic() < deadline:
        if sel.select(deadline - time.monotonic()):
            chunk = os.read(ready_r, 4096)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    if not line:
        line = json.dumps({"ok": False, "error": f"the supervisor said nothing within {timeout:g}s"})
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    return 0 if json.loads(line).get("ok") else 1


def _detach() -> None:
    os.setsid()
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(args: list[str]) -> int:
    inst = Path(args[0])
    plan = Plan.from_json(_files.read_json(inst / "plan.json"))
    ready_r, ready_w = os.pipe()
    if os.fork():
        os.close(ready_w)
        return _starter(ready_r, plan.start_timeout)
    os.close(ready_r)
    _detach()
    try:
        supervise(plan, inst, ready_w)
    except BaseException as exc:  # recorded; the starter and the provider read it
        reason = f"supervisor failed: {type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            _files.write_json(inst / "result.json", {"exit_code": None, "reason": reason, "finished_at": time.time()})
        with contextlib.suppress(OSError):
            os.write(ready_w, (json.dumps({"ok": False, "error": reason}) + "\n").encode())
    os._exit(0)
