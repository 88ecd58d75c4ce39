"""The bubblewrap command line of one sandbox (pure).

bwrap runs as root without a user namespace, so it can mount, and hands the
job to ``setpriv``, which takes the fresh UID/GID, clears supplementary
groups, every capability set and sets no_new_privs before exec. Root inside
the sandbox (bwrap's PID 1 and setpriv, for an instant) holds only
CAP_SETUID/CAP_SETGID/CAP_SETPCAP, what that switch needs.

``--die-with-parent`` ties the sandbox to its supervisor: when the supervisor
(or bwrap itself) dies, PID 1 of the sandbox's PID namespace gets SIGKILL and
the kernel kills everything else in the namespace, daemonized children
included. ``--unshare-pid`` is what makes that complete.
"""

from __future__ import annotations

from providers.host._options import TMPFS, under
from providers.host._sandbox import HostView, Sandbox

CAPS_KEPT = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")


def _depth(path: str) -> int:
    return path.rstrip("/").count("/")


def _mounts(sb: Sandbox, view: HostView) -> list[tuple[str, list[str]]]:
    """(destination, arguments) of every mount but the hidden and credential ones."""
    o = sb.opts
    out: list[tuple[str, list[str]]] = []
    for p in o.read_only_paths:
        if view.kind(p) == "link":
            out.append((p, ["--symlink", view.readlink(p), p]))
        else:
            out.append((p, ["--ro-bind-try", p, p]))
    out += [(p, ["--bind", p, p]) for p in o.read_write_paths]
    for p in TMPFS:  # private, empty
        parent_bound = any(p.startswith(b + "/") for b in o.bound())
        if parent_bound and view.kind(p) != "dir":
            continue  # cannot make a mount point inside a read-only bind
        out.append((p, ["--perms", "0755" if p == "/run" else "1777", "--tmpfs", p]))
    out.append((o.workdir, ["--bind", str(sb.work), o.workdir]))
    files = [pl for pl in sb.placements if pl.bind]
    out += [(pl.file.path, ["--ro-bind", str(pl.host), pl.file.path]) for pl in files]
    # bwrap would make missing parents mode 0700 (root's): make them 0755
    made = {m[0] for m in out}
    for dest in [m[0] for m in out]:
        for parent in _ancestors(dest):
            if parent not in made and not any(under(parent, b) for b in o.bound()):
                made.add(parent)
                out.append((parent, ["--perms", "0755", "--dir", parent]))
    # parents before children; stable among equals
    return sorted(out, key=lambda m: _depth(m[0]))


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def argv(
    sb: Sandbox, *, bwrap: str, setpriv: str, uid: int, command: tuple[str, ...], status_fd: str,
    view: HostView | None = None,
) -> list[str]:
    view = view or HostView()
    args = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]
    if sb.opts.network == "none":
        args.append("--unshare-net")
    args += ["--cap-drop", "ALL"]
    for cap in CAPS_KEPT:
        args += ["--cap-add", cap]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for _dest, mount in _mounts(sb, view):
        args += mount
    for d in sb.hidden_dirs:
        args += ["--perms", "0000", "--tmpfs", d, "--remount-ro", d]
    for f in sb.hidden_files:
        args += ["--ro-bind", "/dev/null", f]
    args += ["--json-status-fd", status_fd, "--"]
    args += drop_to(setpriv, uid)
    args += ["env", "-C", sb.opts.workdir, "--", *command]
    return args


def drop_to(setpriv: str, uid: int) -> list[str]:
    return [
        setpriv,
        f"--reuid={uid}",
        f"--regid={uid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]
