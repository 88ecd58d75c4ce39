"""Pure parts of the Docker provider (no dockerd needed): options, placement, tar."""

from __future__ import annotations

import io
import tarfile
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from providers.docker import DockerPoolOptions, DockerSettings, HostLoad, choose_host
from providers.docker._client import split_ref
from providers.docker._options import parse_size
from providers.docker._provider import credential_tar, info_from_inspect, start_failure_is_permanent
from scaler.provider import CredentialFile, InstanceStatus
from scaler.secrets import Secret


def test_settings_validation() -> None:
    ok = DockerSettings.model_validate(
        {"hosts": [{"name": "a", "url": "unix:///run/docker.sock"}, {"name": "b", "url": "tcp://127.0.0.1:2376"}]}
    )
    assert ok.placement == "spread" and ok.hosts[0].socket_path == "/run/docker.sock"
    assert ok.hosts[1].base_url == "http://127.0.0.1:2376"
    bads: list[dict[str, object]] = [
        {"hosts": []},
        {"hosts": [{"name": "a", "url": "http://x"}]},
        {"hosts": [{"name": "a", "url": "unix://relative.sock"}]},
        {"hosts": [{"name": "a", "url": "tcp://nohost"}]},
        {"hosts": [{"name": "a", "url": "unix:///a"}, {"name": "a", "url": "unix:///b"}]},
        {"hosts": [{"name": "a", "url": "unix:///a"}], "unknown": 1},
        {"hosts": [{"name": "a", "url": "unix:///a"}], "placement": "random"},
    ]
    for bad in bads:
        with pytest.raises(ValidationError):
            DockerSettings.model_validate(bad)


def test_pool_options_validation() -> None:
    o = DockerPoolOptions.model_validate({"resources": {"memory": "1.5g", "cpus": 2, "pids": 100}, "user": "1000"})
    assert o.resources.memory == int(1.5 * 1024**3)
    assert o.owner() == (1000, 1000)
    assert not o.privileged
    assert DockerPoolOptions.model_validate({"user": "runner"}).owner() == (0, 0)
    assert DockerPoolOptions.model_validate({"file_owner": "5:6", "user": "1000"}).owner() == (5, 6)
    for bad in (
        {"privileged": "maybe"},
        {"resources": {"memory": "lots"}},
        {"resources": {"cpus": 0}},
        {"mounts": [{"type": "bind", "source": "rel", "target": "/x"}]},
        {"mounts": [{"type": "tmpfs", "target": "rel"}]},
        {"extra_labels": {"runner-scaler.io/pool": "x"}},
        {"network_mode": "bad mode"},
        {"file_owner": "runner"},
        {"nope": 1},
    ):
        with pytest.raises(ValidationError):
            DockerPoolOptions.model_validate(bad)
    with pytest.raises(ValidationError):
        o.privileged = True  # frozen


@pytest.mark.parametrize(
    ("text", "size"), [("512m", 512 * 1024**2), ("2g", 2 * 1024**3), ("1GiB", 1024**3), ("4096", 4096), (10, 10)]
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


def test_split_ref() -> None:
    assert split_ref("busybox") == ("busybox", "latest")
    assert split_ref("registry:5000/a/b:1.2") == ("registry:5000/a/b", "1.2")
    assert split_ref("registry:5000/a/b") == ("registry:5000/a/b", "latest")
    assert split_ref("a/b@sha256:abc") == ("a/b", "sha256:abc")


def test_spread_and_pack() -> None:
    hosts = [HostLoad("a", 2, None), HostLoad("b", 1, None), HostLoad("c", 1, 1)]
    assert choose_host(hosts, "spread") == "b"
    assert choose_host(hosts, "pack") == "a"
    assert choose_host([HostLoad("a", 5, 5), HostLoad("b", 0, None, healthy=False)], "spread") is None


@given(st.lists(st.tuples(st.integers(0, 20), st.one_of(st.none(), st.integers(0, 20)), st.booleans()), max_size=8))
def test_placement_never_picks_a_full_or_down_host(rows: list[tuple[int, int | None, bool]]) -> None:
    hosts = [HostLoad(f"h{i}", n, cap, ok) for i, (n, cap, ok) in enumerate(rows)]
    modes: tuple[Literal["spread", "pack"], ...] = ("spread", "pack")
    for mode in modes:
        chosen = choose_host(hosts, mode)
        roomy = [h for h in hosts if h.has_room]
        if not roomy:
            assert chosen is None
            continue
        pick = next(h for h in hosts if h.name == chosen)
        assert pick.has_room
        if mode == "spread":
            assert pick.active == min(h.active for h in roomy)
        else:
            assert pick.active == max(h.active for h in roomy)


def test_credential_tar_modes_and_owner() -> None:
    data = credential_tar(
        [CredentialFile("/home/r/.cfg/runner", Secret("s3cret-value"))], "/", (1000, 1000), ["/home/r/.cfg"]
    )
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["home/r/.cfg"].isdir() and members["home/r/.cfg"].mode == 0o700
        f = members["home/r/.cfg/runner"]
        assert f.mode == 0o600 and (f.uid, f.gid) == (1000, 1000)
        assert tar.extractfile(f).read() == b"s3cret-value"  # type: ignore[union-attr]


def test_info_from_inspect_states() -> None:
    base = {
        "Name": "/x",
        "Config": {"Labels": {"runner-scaler.io/created-at": "12.5"}},
        "Created": "2024-01-01T00:00:00.123456789Z",
    }
    run = info_from_inspect({**base, "State": {"Status": "running"}}, "h")
    assert run.status is InstanceStatus.RUNNING and run.created_at == 12.5 and run.name == "x"
    oom = info_from_inspect({**base, "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True}}, "h")
    assert (oom.status, oom.reason, oom.exit_code) == (InstanceStatus.FAILED, "OOMKilled", 137)
    bad = info_from_inspect({**base, "State": {"Status": "created", "Error": "exec: not found"}}, "h")
    assert bad.status is InstanceStatus.FAILED and bad.reason == "exec: not found"
    no_label = info_from_inspect(
        {
            "Name": "/y",
            "Config": {"Labels": {}},
            "Created": "2024-01-01T00:00:00.5Z",
            "State": {"Status": "exited", "ExitCode": 0},
        },
        "h",
    )
    assert no_label.status is InstanceStatus.EXITED and no_label.created_at == 1704067200.5


@pytest.mark.parametrize(
    ("message", "permanent"),
    [
        # dockerd 28's words for a missing command, as the real engine says them
        ('500 failed to create shim task: OCI runtime create failed: runc create failed: unable to start container '
         'process: exec: "/no/such/binary": stat /no/such/binary: no such file or directory: unknown', True),
        ('500 failed to create shim task: OCI runtime create failed: runc create failed: unable to start container '
         'process: exec: "nosuchcmd": executable file not found in $PATH: unknown', True),
        # the engine's own store while dockerd shuts down (seen in CI)
        ("500 failed to update store for object type *libnetwork.endpoint: open : no such file or directory", False),
        ("500 OCI runtime create failed: runc create failed: fork/exec: resource temporarily unavailable", False),
        ("500 connection error: dial unix /run/containerd/containerd.sock: connect: connection refused", False),
    ],
)
def test_start_failure_classification(message: str, permanent: bool) -> None:
    """Only runc refusing the container itself makes a start failure permanent; the engine's own trouble passes."""
    assert start_failure_is_permanent(message) is permanent
