"""The cloud-init NoCloud seed: a small ISO 9660 image labelled ``cidata``.

Layout (Rock Ridge + Joliet names)::

    /meta-data                  instance-id, local-hostname
    /user-data                  #cloud-config: write_files (credentials, 0600),
                                runcmd (the launcher, once), power_state poweroff
    /runner-scaler/start.sh     the launcher: exports env, runs the command
    /runner-scaler/manifest     "<index> <mode-octal> <path>" per credential file
    /runner-scaler/files/<i>    credential file contents
    /runner-scaler/stamp.json   the non-secret identity stamps (labels)

cloud-init images use ``user-data``; the plain files let a minimal guest
without cloud-init (the test guest's busybox ``/init``) do the same job.
The seed is the only place a credential is written; the domain XML never holds
one. It is uploaded as a storage volume and removed with the instance.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
from collections.abc import Mapping, Sequence

import pycdlib

from scaler.provider import CredentialFile

VOLUME_LABEL = "cidata"
LAUNCHER_PATH = "/run/runner-scaler/start.sh"


def launcher_script(command: Sequence[str], env: Mapping[str, str]) -> str:
    lines = ["#!/bin/sh", "# written by runner-scaler: runs the runner once"]
    for key in sorted(env):
        if not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ValueError(f"invalid environment variable name {key!r}")
        lines.append(f"export {key}={shlex.quote(env[key])}")
    lines.append(shlex.join(command) if command else "true")
    return "\n".join(lines) + "\n"


def user_data(files: Sequence[CredentialFile], launcher: str) -> str:
    write_files: list[dict[str, str]] = [
        {
            "path": f.path,
            "encoding": "b64",
            "content": base64.b64encode(f.content.encode()).decode(),
            "permissions": f"0{f.mode:o}",
            "owner": "root:root",
        }
        for f in files
    ]
    write_files.append(
        {
            "path": LAUNCHER_PATH,
            "encoding": "b64",
            "content": base64.b64encode(launcher.encode()).decode(),
            "permissions": "0700",
        }
    )
    doc = {
        "write_files": write_files,
        "runcmd": [["sh", LAUNCHER_PATH]],
        # the instance is single-use: power off when the runner has exited
        "power_state": {"mode": "poweroff", "condition": True, "timeout": 30, "message": "runner exited"},
    }
    # JSON is YAML: no dumper quirks, deterministic output.
    return "#cloud-config\n" + json.dumps(doc, indent=1, sort_keys=True) + "\n"


def meta_data(name: str) -> str:
    return f"instance-id: {name}\nlocal-hostname: {name}\n"


def build_seed(
    name: str,
    command: Sequence[str],
    env: Mapping[str, str],
    files: Sequence[CredentialFile],
    stamp: Mapping[str, str],
) -> bytes:
    """The seed ISO's bytes."""
    for f in files:
        if not f.path.startswith("/") or any(c in f.path for c in "\n\r\t "):
            raise ValueError(f"credential file path must be absolute without whitespace: {f.path!r}")
    launcher = launcher_script(command, env)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL)

    def add(iso_path: str, rr: str, joliet: str, data: bytes) -> None:
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=rr, joliet_path=joliet)

    add("/METADATA.;1", "meta-data", "/meta-data", meta_data(name).encode())
    add("/USERDATA.;1", "user-data", "/user-data", user_data(files, launcher).encode())
    iso.add_directory("/RS", rr_name="runner-scaler", joliet_path="/runner-scaler")
    iso.add_directory("/RS/FILES", rr_name="files", joliet_path="/runner-scaler/files")
    add("/RS/START.SH;1", "start.sh", "/runner-scaler/start.sh", launcher.encode())
    manifest = "".join(f"{i} {f.mode:o} {f.path}\n" for i, f in enumerate(files))
    add("/RS/MANIFEST.;1", "manifest", "/runner-scaler/manifest", manifest.encode())
    add("/RS/STAMP.JSN;1", "stamp.json", "/runner-scaler/stamp.json", json.dumps(dict(stamp), sort_keys=True).encode())
    for i, f in enumerate(files):
        add(f"/RS/FILES/F{i}.;1", str(i), f"/runner-scaler/files/{i}", f.content.encode())
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_seed(data: bytes) -> dict[str, bytes]:
    """Every file of a seed by its Rock Ridge path (``/user-data``, …)."""
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        if iso.pvd.volume_identifier.decode().strip() != VOLUME_LABEL:
            raise ValueError("not a cidata seed")
        out: dict[str, bytes] = {}
        for dirname, _dirs, filelist in iso.walk(rr_path="/"):
            for fname in filelist:
                path = (dirname.rstrip("/") + "/" + fname) if dirname != "/" else "/" + fname
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, rr_path=path)
                out[path] = buf.getvalue()
        return out
    finally:
        iso.close()


def read_stamp(data: bytes) -> dict[str, str]:
    files = read_seed(data)
    raw = files.get("/runner-scaler/stamp.json")
    if raw is None:
        raise ValueError("seed has no stamp")
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise ValueError("stamp is not an object")
    return {str(k): str(v) for k, v in doc.items()}
