"""Fast tests: options, domain XML + metadata, the seed ISO, and the
provider's bookkeeping against libvirt's in-process ``test:///default`` driver
(no daemon needed)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import pytest
from pydantic import ValidationError

from providers.libvirt import LibvirtPoolOptions, LibvirtProvider, LibvirtSettings
from providers.libvirt.domainxml import NS_URI, DomainPlan, domain_disk_volumes, parse_metadata, render_domain
from providers.libvirt.seed import build_seed, launcher_script, read_seed, read_stamp
from scaler.errors import ProviderPermanentError
from scaler.provider import (
    LABEL_CONTROLLER,
    LABEL_CREATED_AT,
    LABEL_POOL,
    LABEL_RUNNER_ID,
    CredentialFile,
    InstanceInfo,
    InstanceStatus,
    ProviderSettings,
)
from scaler.secrets import Secret

LABELS = {
    LABEL_CONTROLLER: "ctl-a",
    LABEL_POOL: "vm",
    LABEL_RUNNER_ID: "17",
    LABEL_CREATED_AT: "1700000000.250",
}
SECRET = "s3cr3t-token-value-0123456789"


def plan(name: str = "vm-1", labels: dict[str, str] | None = None, serial: str | None = None) -> DomainPlan:
    return DomainPlan(name, "default-pool", f"{name}.overlay.qcow2", f"{name}.seed.iso",
                      labels or LABELS, 1700000000.25, serial)


# --- options -------------------------------------------------------------------


def test_settings_and_pool_options_validate() -> None:
    s = LibvirtSettings.model_validate({"hosts": [{"uri": "qemu:///system"}, {"uri": "qemu+ssh://h/system"}]})
    assert s.storage_pool == "default" and len(s.hosts) == 2
    with pytest.raises(ValidationError):
        LibvirtSettings.model_validate({"hosts": []})
    with pytest.raises(ValidationError):
        LibvirtSettings.model_validate({"hosts": [{"uri": "a"}, {"uri": "a"}]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        LibvirtSettings.model_validate({"hosts": [{"uri": "a"}], "bogus": 1})
    with pytest.raises(ValidationError):
        LibvirtPoolOptions.model_validate({"network": "n", "bridge": "br0"})
    with pytest.raises(ValidationError):
        LibvirtPoolOptions.model_validate({"initrd": "/i"})
    with pytest.raises(ValidationError, match="metadata-url"):
        LibvirtPoolOptions.model_validate({"seed": "metadata-url"})
    opts = LibvirtPoolOptions.model_validate({"base_image": "b.qcow2"})
    with pytest.raises(ValidationError):
        opts.vcpus = 4  # frozen


def test_provider_factory_attributes() -> None:
    assert LibvirtProvider.settings_model is LibvirtSettings
    assert LibvirtProvider.pool_options_model is LibvirtPoolOptions
    with pytest.raises(ProviderPermanentError):
        LibvirtProvider(ProviderSettings("x", "libvirt", "c", {"hosts": "nope"}))


# --- domain XML ------------------------------------------------------------------


def test_render_default_template() -> None:
    opts = LibvirtPoolOptions(base_image="b", vcpus=3, memory_mib=1536, domain_type="qemu",
                              kernel="/k", initrd="/i", cmdline="console=ttyS0")
    root = ET.fromstring(render_domain(plan(serial="/logs/vm-1.log"), opts))
    assert root.get("type") == "qemu"
    assert root.findtext("name") == "vm-1"
    assert root.findtext("memory") == "1536" and root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "3"
    assert root.find("features/acpi") is not None
    for action in ("on_poweroff", "on_reboot", "on_crash"):
        assert root.findtext(action) == "destroy"
    assert root.findtext("os/kernel") == "/k" and root.findtext("os/initrd") == "/i"
    assert root.find("devices/interface") is None  # no NIC unless asked
    assert domain_disk_volumes(ET.tostring(root, encoding="unicode")) == [
        ("default-pool", "vm-1.overlay.qcow2"), ("default-pool", "vm-1.seed.iso")]
    assert root.find("devices/serial").get("type") == "file"  # type: ignore[union-attr]
    assert root.find("devices/serial/source").get("path") == "/logs/vm-1.log"  # type: ignore[union-attr]


def test_render_template_overrides_and_network() -> None:
    template = """<domain type='kvm'><name>old</name><uuid>00000000-0000-0000-0000-000000000001</uuid>
      <memory unit='KiB'>1</memory><currentMemory unit='KiB'>1</currentMemory>
      <metadata><other xmlns='urn:x'>keep</other></metadata>
      <os><type>hvm</type><boot dev='network'/></os><cpu mode='host-passthrough'/>
      <devices><serial type='pty'/></devices></domain>"""
    opts = LibvirtPoolOptions(template_inline=template, bridge="br-ci", firmware="efi", machine="q35",
                              seed_device="cdrom", disk_bus="scsi")
    root = ET.fromstring(render_domain(plan(), opts))
    assert root.findtext("name") == "vm-1" and root.find("uuid") is None and root.find("currentMemory") is None
    assert root.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]  # template kept
    assert root.find("metadata/{urn:x}other") is not None  # foreign metadata kept
    assert root.find("os").get("firmware") == "efi"  # type: ignore[union-attr]
    assert root.find("os/type").get("machine") == "q35"  # type: ignore[union-attr]
    nic = root.find("devices/interface")
    assert nic is not None and nic.get("type") == "bridge" and nic.find("source").get("bridge") == "br-ci"  # type: ignore[union-attr]
    cdrom = root.find("devices/disk[@device='cdrom']/target")
    assert cdrom is not None and cdrom.get("bus") == "sata"
    assert root.find("devices/controller[@type='scsi']") is not None
    with pytest.raises(ValueError):
        render_domain(plan(), LibvirtPoolOptions(template_inline="<nope/>"))


def test_metadata_round_trip_and_no_secret_in_xml() -> None:
    xml = render_domain(plan(), LibvirtPoolOptions(base_image="b"))
    assert SECRET not in xml
    stamp = parse_metadata(xml)
    assert stamp is not None and stamp.labels == LABELS and stamp.created_at == 1700000000.25
    # what virDomainGetMetadata returns: the bare element
    el = ET.fromstring(xml).find(f"metadata/{{{NS_URI}}}instance")
    assert el is not None
    bare = ET.tostring(el, encoding="unicode").replace("rs:", "").replace(f' xmlns:rs="{NS_URI}"', "")
    assert parse_metadata(bare) == stamp
    assert parse_metadata("<domain><name>x</name></domain>") is None
    assert parse_metadata("not xml") is None


# --- seed ------------------------------------------------------------------------


def test_seed_iso_parsed_back() -> None:
    files = (CredentialFile("/etc/runner/.runner", Secret(SECRET)),
             CredentialFile("/home/runner/extra", Secret("second-file"), 0o640))
    data = build_seed("vm-1", ("run.sh", "--jitconfig", "a b"), {"X": "it's"}, files, LABELS)
    import pycdlib

    iso = pycdlib.PyCdlib()
    import io

    iso.open_fp(io.BytesIO(data))
    assert iso.pvd.volume_identifier.decode().strip() == "cidata"
    iso.close()
    seen = read_seed(data)
    assert seen["/meta-data"].decode() == "instance-id: vm-1\nlocal-hostname: vm-1\n"
    user = seen["/user-data"].decode()
    assert user.startswith("#cloud-config\n")
    doc = json.loads(user.split("\n", 1)[1])
    wf = {w["path"]: w for w in doc["write_files"]}
    import base64

    assert base64.b64decode(wf["/etc/runner/.runner"]["content"]).decode() == SECRET
    assert wf["/etc/runner/.runner"]["permissions"] == "0600"
    assert wf["/home/runner/extra"]["permissions"] == "0640"
    assert doc["power_state"]["mode"] == "poweroff"
    assert doc["runcmd"] == [["sh", "/run/runner-scaler/start.sh"]]
    assert seen["/runner-scaler/files/0"].decode() == SECRET
    assert seen["/runner-scaler/manifest"].decode() == "0 600 /etc/runner/.runner\n1 640 /home/runner/extra\n"
    assert read_stamp(data) == LABELS
    assert SECRET.encode() not in seen["/runner-scaler/stamp.json"]
    start = seen["/runner-scaler/start.sh"].decode()
    assert "export X='it'\"'\"'s'" in start and "run.sh --jitconfig 'a b'" in start
    assert hashlib.sha256(seen["/runner-scaler/files/0"]).hexdigest() == hashlib.sha256(SECRET.encode()).hexdigest()


def test_seed_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        build_seed("x", ("true",), {}, (CredentialFile("relative/path", Secret("abcdefg")),), {})
    with pytest.raises(ValueError):
        launcher_script(("true",), {"BAD-NAME": "x"})


# --- bookkeeping against test:///default -------------------------------------------


@pytest.fixture
async def test_provider() -> AsyncIterator[LibvirtProvider]:
    p = LibvirtProvider(ProviderSettings("t", "libvirt", "ctl-a", {
        "hosts": [{"uri": "test:///default"}], "storage_pool": "default-pool"}))
    # test:///default keeps its state only while a connection is open
    assert await p.list() == []
    yield p
    await p.close()


def _define(name: str, controller: str) -> None:
    import libvirt

    conn = libvirt.open("test:///default")
    try:
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
    except BaseException:
        conn.close()
        raise
    labels = {**LABELS, LABEL_CONTROLLER: controller}
    conn.createXML(render_domain(plan(name, labels), LibvirtPoolOptions(base_image="b")), 0)
    conn.close()


async def test_list_get_delete_from_metadata(test_provider: LibvirtProvider) -> None:
    _define("t-ours", "ctl-a")
    _define("t-theirs", "ctl-b")
    names = {i.name: i for i in await test_provider.list()}
    assert "t-ours" in names and "t-theirs" not in names and "test" not in names
    info = names["t-ours"]
    assert info.status is InstanceStatus.RUNNING
    assert info.labels[LABEL_RUNNER_ID] == "17" and info.created_at == 1700000000.25
    assert info.host == "test:///default"
    got = await test_provider.get("t-ours")
    assert got is not None and got.pool == "vm"
    assert await test_provider.get("t-theirs") is None  # not ours: invisible
    await test_provider.delete("t-theirs")  # ... and untouchable
    await test_provider.delete("t-ours")
    await test_provider.delete("t-ours")
    assert await test_provider.get("t-ours") is None
    import libvirt

    conn = libvirt.open("test:///default")
    assert conn.lookupByName("t-theirs").isActive()
    conn.lookupByName("t-theirs").destroy()
    conn.close()


async def test_check_reports_per_host(test_provider: LibvirtProvider) -> None:
    findings = await test_provider.check({"vm": {"base_image": "missing.qcow2", "vcpus": 100}})
    text = "\n".join(str(f) for f in findings)
    assert "connected" in text and "storage pool default-pool active" in text
    assert "base image missing.qcow2 missing" in text
    assert any(f.level == "error" and "vCPUs" in f.message for f in findings)


async def test_watch_ends_when_cancelled_as_an_event_arrives(test_provider: LibvirtProvider) -> None:
    """A watch cancelled in the loop turn an event reaches it ends (3.11's wait_for dropped that cancellation)."""
    seen: list[InstanceInfo] = []

    async def consume() -> None:
        async for info in test_provider.watch():
            seen.append(info)

    task = asyncio.create_task(consume())
    while not test_provider._watchers:  # the watch registers, then waits on its queue
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    ((_loop, queue),) = test_provider._watchers
    queue.put_nowait(InstanceInfo("vm-x", InstanceStatus.EXITED, {}, None))
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    if not done:  # the bug: the watch went on; stop it for good before failing
        test_provider._closed = True
        task.cancel()
    assert task in done and task.cancelled()
    assert test_provider._watchers == []


async def test_unreachable_host_is_temporary() -> None:
    from scaler.errors import ProviderTemporaryError

    p = LibvirtProvider(ProviderSettings("t", "libvirt", "ctl-a", {
        "hosts": [{"uri": "test:///nonexistent/file.xml"}], "storage_pool": "default-pool"}))
    try:
        assert await p.list() == []  # the host is skipped
        findings = await p.check({})
        assert findings and findings[0].level == "error"
        with pytest.raises(ProviderTemporaryError):
            await p.delete("anything")  # cannot confirm it is gone
    finally:
        await p.close()


def test_example_template_and_config_render() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "examples" / "libvirt"
    doc = yaml.safe_load((root / "config.yaml").read_text())
    LibvirtSettings.model_validate(doc["providers"][0]["options"])
    opts = LibvirtPoolOptions.model_validate(
        {**doc["pools"][0]["provider_options"], "template": str(root / "runner-domain.xml")})
    dom = ET.fromstring(render_domain(plan(), opts))
    assert dom.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert dom.find("devices/interface/source").get("network") == "ci-egress"  # type: ignore[union-attr]
    assert dom.find("devices/rng") is not None and parse_metadata(ET.tostring(dom, encoding="unicode")) is not None


async def test_placement_skips_unreachable_and_respects_caps() -> None:
    from scaler.errors import ProviderTemporaryError

    p = LibvirtProvider(ProviderSettings("t", "libvirt", "ctl-a", {
        "hosts": [{"uri": "test:///nonexistent/file.xml"},
                  {"uri": "test:///default", "max_vcpus": 4, "max_memory_mib": 16384}],
        "storage_pool": "default-pool"}))
    try:
        await p.list()  # keeps test:///default's state alive
        small = LibvirtPoolOptions(vcpus=1, memory_mib=512)
        # the built-in "test" domain uses 2 vCPUs / 8 GiB of the driver's fake host; count it
        host = await p._call(p._place, small)
        assert host.uri == "test:///default" and host.reserved_vcpus == 1
        p._unreserve(host, small)
        with pytest.raises(ProviderTemporaryError, match="no host has"):
            await p._call(p._place, LibvirtPoolOptions(vcpus=8, memory_mib=512))
    finally:
        await p.close()
