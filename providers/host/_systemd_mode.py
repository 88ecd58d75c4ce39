"""systemd mode: create, status and teardown through systemd-run / systemctl.

Not run on these machines (systemd is not PID 1 here); see ``_systemd``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from providers.host import _files, _systemd
from providers.host._launch import StartFailed, write_record
from providers.host._options import HostPoolOptions, HostSettings, under
from providers.host._sandbox import HostView, resolve_packages, sandbox_env
from providers.host._state import Layout, Record
from scaler.provider import InstanceStatus, LaunchSpec


def _sees(opts: HostPoolOptions) -> Callable[[str], bool]:
    """What a unit sees: the host read-only, minus ProtectHome and the hidden paths."""

    def sees(path: str) -> bool:
        blocked = (*_systemd.PROTECTED_HOME, *opts.hidden())
        return not any(under(path, p) for p in blocked)

    return sees


class SystemdDriver:
    def __init__(self, settings: HostSettings, layout: Layout) -> None:
        self.settings, self.layout = settings, layout
        self.view = HostView()

    def _creds(self, spec: LaunchSpec) -> list[_systemd.Credential]:
        return [
            _systemd.Credential(f.path, self.layout.dir(spec.name) / "credentials" / str(i))
            for i, f in enumerate(spec.files)
        ]

    def argv(self, spec: LaunchSpec, opts: HostPoolOptions) -> list[str]:
        """Refuses (SandboxError) what the unit could not run, before anything is made."""
        _systemd.check_credentials(spec, opts)
        sees = _sees(opts)
        dirs = resolve_packages(opts, self.view, sees)
        env = sandbox_env(spec, opts, dirs)
        return _systemd.systemd_run_argv(
            spec, opts, systemd_run=self.settings.systemd_run, env=env, creds=self._creds(spec)
        )

    def record(self, spec: LaunchSpec, opts: HostPoolOptions, controller: str, provider: str) -> Record:
        now = time.time()
        return Record(
            name=spec.name, controller=controller, provider=provider, mode="systemd", labels=dict(spec.labels),
            uid=None, created_at=now, deadline=now + spec.max_lifetime if spec.max_lifetime else None,
            sweep=tuple(opts.read_write_paths) if opts.sweep_read_write_paths else (),
            unit=_systemd.unit_name(spec.name),
        )

    async def start(self, spec: LaunchSpec, opts: HostPoolOptions, record: Record) -> Record:
        argv = self.argv(spec, opts)
        write_record(self.layout, record)
        store = self.layout.dir(spec.name) / "credentials"
        _files.ensure_dir(store)
        for cred, f in zip(self._creds(spec), spec.files, strict=True):
            fd = os.open(cred.host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(f.content.encode())
        rc, _out, err = await _systemd.run(argv, self.settings.start_timeout)
        if rc != 0 and "already" not in err:  # "Unit … already exists": a create that came back
            raise StartFailed(f"systemd-run failed ({rc}): {err.strip()[-500:]}", permanent="Invalid" in err)
        return record

    async def _show(self, name: str) -> dict[str, str]:
        rc, out, err = await _systemd.run(_systemd.show_argv(self.settings.systemctl, name), 30)
        if rc != 0:
            raise StartFailed(f"systemctl show failed ({rc}): {err.strip()[-300:]}", permanent=False)
        return _systemd.parse_show(out)

    async def status(self, record: Record) -> tuple[InstanceStatus, int | None, str | None]:
        found = _systemd.status_of(await self._show(record.name))
        if found is None:
            return InstanceStatus.FAILED, None, "its unit is gone"
        return found

    async def teardown(self, name: str, record: Record | None) -> None:
        unit = _systemd.unit_name(name)
        uid = _systemd.dynamic_uid(await self._show(name))
        await _systemd.run([self.settings.systemctl, "stop", unit], self.settings.kill_timeout + 30)
        await _systemd.run([self.settings.systemctl, "reset-failed", unit], 30)
        await asyncio.to_thread(self._remove, name, record, uid)

    def _remove(self, name: str, record: Record | None, uid: int | None) -> None:
        if record is not None and uid is not None:
            for top in record.sweep:
                _files.sweep(Path(top), uid)
        root = _systemd.STATE_ROOT
        _files.remove_tree(root / "private" / _systemd.WORK_PARENT / name)
        _files.remove_tree(root / _systemd.WORK_PARENT / name)
        _files.remove_tree(self.layout.dir(name))
