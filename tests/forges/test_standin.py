"""The stand-in runners: the busybox ``sh`` script and its Python twin."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from scaler.clock import FakeClock
from scaler.forges.forgejo import ForgejoForge
from scaler.forges.gitea import GiteaForge
from scaler.forges.github import GitHubForge
from scaler.testing.fake_forge_server import FakeForgeServer
from scaler.testing.standin import run_launch
from tests.forges.conftest import forge_config, pool

SCRIPT = Path(__file__).resolve().parents[1] / "standin" / "runner.sh"
BUSYBOX = shutil.which("busybox")


async def _noop(_: float) -> None:
    return None


def _busybox_path(tmp: Path) -> str:
    """A PATH holding only busybox applets (what the test images have)."""
    assert BUSYBOX is not None
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("sh", "wget", "sed", "tr", "cat", "base64", "sleep", "echo", "printf"):
        link = bindir / tool
        if not link.exists():
            link.symlink_to(BUSYBOX)
    return str(bindir)


def _materialise(tmp: Path, launch_files: dict[str, str]) -> dict[str, Path]:
    out = {}
    for path, content in launch_files.items():
        p = tmp / "inst" / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
        p.chmod(0o600)
        out[path] = p
    return out


def _run_script(tmp: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    assert BUSYBOX is not None
    return subprocess.run(
        [BUSYBOX, "sh", str(SCRIPT), *args, "--polls", "3", "--interval", "0"],
        env={"PATH": _busybox_path(tmp)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _handle_args(command: tuple[str, ...]) -> list[str]:
    return ["--handle", command[command.index("--handle") + 1]] if "--handle" in command else []


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
@pytest.mark.parametrize(("kind", "version"), [("gitea", "1.25.0"), ("forgejo", "15.0.0"), ("github", None)])
async def test_shell_standin_under_busybox(tmp_path: Path, kind: str, version: str | None) -> None:
    clock = FakeClock()
    with FakeForgeServer(kind, version, clock=clock.now) as srv:
        cls = {"gitea": GiteaForge, "forgejo": ForgejoForge, "github": GitHubForge}[kind]
        adapter = cls(forge_config(tmp_path, kind, srv.url), clock=clock)
        older = srv.queue_job("acme/app", ["ubuntu-latest"])
        job = srv.queue_job("acme/app", ["ubuntu-latest"])
        queued = await adapter.list_queued_jobs()
        assert queued is not None
        target = next(j for j in queued if j.id == job.id)
        launch = await adapter.mint(pool(), "rs-sh-1", target)
        files = _materialise(tmp_path, {f.path: f.content.reveal() for f in launch.files})
        if kind == "github":
            args = ["--jit-file", str(files["/run/runner-scaler/jitconfig"]), "--runner-file", "/nonexistent"]
        elif kind == "forgejo":  # the one-job command line itself, the token file where the test put it
            args = [a.replace("file:/data/token", f"file:{files['/data/token']}") for a in launch.command[1:]]
        else:
            args = ["--runner-file", str(files["/data/.runner"]), *_handle_args(launch.command)]
        proc = _run_script(tmp_path, args)
        assert proc.returncode == 0, proc.stderr
        taken = job if kind == "forgejo" else older  # the handle binds Forgejo's runner to its job
        assert taken.status == "success" and taken.runner_name == "rs-sh-1", proc.stderr
        await adapter.aclose()


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
async def test_shell_one_job_without_a_task_exits_2(tmp_path: Path) -> None:
    """forgejo-runner one-job without --wait: one fetch, no task, exit 2."""
    with FakeForgeServer("forgejo", "15.0.0") as srv:
        adapter = ForgejoForge(forge_config(tmp_path, "forgejo", srv.url, options={"one_job_wait": False}))
        launch = await adapter.mint(pool(), "rs-sh-3", None)
        files = _materialise(tmp_path, {f.path: f.content.reveal() for f in launch.files})
        args = [a.replace("file:/data/token", f"file:{files['/data/token']}") for a in launch.command[1:]]
        proc = _run_script(tmp_path, args)
        assert proc.returncode == 2 and "no task received" in proc.stderr
        runner = srv.runner_by_name("rs-sh-3")
        assert runner is not None and runner.online  # it declared itself, then gave up
        await adapter.aclose()


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
async def test_shell_daemon_reads_the_runner_file_from_its_config(tmp_path: Path) -> None:
    """act_runner daemon --config F finds .runner through runner.file and,
    the file being ephemeral, takes one job and exits."""
    with FakeForgeServer("gitea", "1.25.0") as srv:
        adapter = GiteaForge(forge_config(tmp_path, "gitea", srv.url, options={"runner_dir": "/data"}))
        first = srv.queue_job("acme/app", ["ubuntu-latest"])
        second = srv.queue_job("acme/app", ["ubuntu-latest"])
        launch = await adapter.mint(pool(), "rs-sh-4", None)
        files = _materialise(tmp_path, {f.path: f.content.reveal() for f in launch.files})
        config = files["/data/config.yaml"]
        config.write_text(config.read_text().replace('"/data/.runner"', f'"{files["/data/.runner"]}"'))
        proc = _run_script(tmp_path, ["daemon", "--config", str(config)])
        assert proc.returncode == 0, proc.stderr
        assert first.status == "success" and second.status == "waiting"
        await adapter.aclose()


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
def test_shell_standin_without_credential_fails(tmp_path: Path) -> None:
    proc = _run_script(tmp_path, ["--runner-file", "/nonexistent", "--jit-file", "/nonexistent"])
    assert proc.returncode == 2 and "no credential" in proc.stderr


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
async def test_shell_standin_refused_token(tmp_path: Path) -> None:
    with FakeForgeServer("gitea", "1.25.0") as srv:
        adapter = GiteaForge(forge_config(tmp_path, "gitea", srv.url))
        launch = await adapter.mint(pool(), "rs-sh-2", None)
        content = next(f.content.reveal() for f in launch.files if f.path.endswith("/.runner"))
        runner = srv.runner_by_name("rs-sh-2")
        assert runner is not None
        files = _materialise(tmp_path, {"/data/.runner": content.replace(runner.token, "0" * 40)})
        proc = _run_script(tmp_path, ["--runner-file", str(files["/data/.runner"])])
        assert proc.returncode == 1 and "Declare failed" in proc.stderr
        await adapter.aclose()


async def test_python_standin_no_job_returns_none(tmp_path: Path) -> None:
    with FakeForgeServer("gitea", "1.25.0") as srv:
        adapter = GiteaForge(forge_config(tmp_path, "gitea", srv.url))
        launch = await adapter.mint(pool(), "rs-py", None)
        result = await run_launch({f.path: f.content.reveal() for f in launch.files}, launch.command,
                                  max_polls=3, sleep=_noop)
        assert result.job_id is None and result.calls[0] == "Declare 200"
        runner = srv.runner_by_name("rs-py")
        assert runner is not None and runner.online
        await adapter.aclose()
