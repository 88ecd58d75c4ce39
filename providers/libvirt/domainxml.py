"""Domain XML for one runner instance, and the ``<metadata>`` identity stamp.

The pool's template (or a minimal default) is the starting point; the
provider owns name, type, memory, vCPUs, the life-cycle actions (a runner VM
is single-use: power-off, reboot and crash all end it), the metadata stamp,
the overlay disk and the seed, and optionally the NIC, firmware, direct kernel
boot and a serial log file. Nothing secret is ever part of this XML: the
credentials travel in the seed volume only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from providers.libvirt.options import LibvirtPoolOptions

NS_URI = "https://runner-scaler.io/xmlns/libvirt/1"
NS_PREFIX = "rs"
ET.register_namespace(NS_PREFIX, NS_URI)

DEFAULT_TEMPLATE = """\
<domain type='kvm'>
  <os><type arch='x86_64'>hvm</type></os>
  <features><acpi/><apic/></features>
  <devices>
    <memballoon model='none'/>
  </devices>
</domain>
"""


@dataclass(frozen=True, slots=True)
class DomainPlan:
    name: str
    storage_pool: str
    overlay_volume: str
    seed_volume: str
    labels: Mapping[str, str]
    created_at: float
    serial_log: str | None = None


def _q(tag: str) -> str:
    return f"{{{NS_URI}}}{tag}"


def metadata_element(labels: Mapping[str, str], created_at: float) -> ET.Element:
    root = ET.Element(_q("instance"), {"created": f"{created_at:.3f}"})
    for key in sorted(labels):
        el = ET.SubElement(root, _q("label"), {"key": key})
        el.text = labels[key]
    return root


def metadata_xml(labels: Mapping[str, str], created_at: float) -> str:
    return ET.tostring(metadata_element(labels, created_at), encoding="unicode")


@dataclass(frozen=True, slots=True)
class Stamp:
    labels: dict[str, str]
    created_at: float | None


def parse_metadata(xml_text: str) -> Stamp | None:
    """Read our stamp from a domain XML or from the bare metadata element
    (what ``virDomainGetMetadata`` returns); None when it is not there."""
    try:
        root = ET.fromstring(xml_text)  # noqa: S314 (libvirtd's own XML)
    except ET.ParseError:
        return None
    # virDomainGetMetadata hands the element back without its namespace
    if root.tag in (_q("instance"), "instance"):
        el: ET.Element | None = root
    else:
        el = root.find(f"metadata/{_q('instance')}")
    if el is None:
        return None
    labs = [*el.findall(_q("label")), *el.findall("label")]
    labels = {lab.get("key", ""): lab.text or "" for lab in labs if lab.get("key")}
    created: float | None
    try:
        created = float(el.get("created", ""))
    except ValueError:
        created = None
    return Stamp(labels, created)


def _child(parent: ET.Element, tag: str, attrs: Mapping[str, str] | None = None) -> ET.Element:
    """The first ``tag`` child, created (with attrs) when missing."""
    el = parent.find(tag)
    if el is None:
        el = ET.SubElement(parent, tag, dict(attrs or {}))
    return el


def _set_text(parent: ET.Element, tag: str, text: str, attrs: Mapping[str, str] | None = None) -> None:
    el = _child(parent, tag)
    el.attrib.clear()
    el.attrib.update(attrs or {})
    el.text = text


def load_template(opts: LibvirtPoolOptions) -> str:
    if opts.template_inline is not None:
        return opts.template_inline
    if opts.template is not None:
        with open(opts.template, encoding="utf-8") as fh:
            return fh.read()
    return DEFAULT_TEMPLATE


def render_domain(plan: DomainPlan, opts: LibvirtPoolOptions, template: str | None = None) -> str:
    text = template if template is not None else load_template(opts)
    try:
        root = ET.fromstring(text)  # noqa: S314 (the operator's template)
    except ET.ParseError as exc:
        raise ValueError(f"domain template is not XML: {exc}") from None
    if root.tag != "domain":
        raise ValueError("domain template's root element must be <domain>")
    root.set("type", opts.domain_type)
    for tag in ("uuid", "currentMemory"):
        for el in root.findall(tag):
            root.remove(el)
    _set_text(root, "name", plan.name)
    _set_text(root, "memory", str(opts.memory_mib), {"unit": "MiB"})
    _set_text(root, "vcpu", str(opts.vcpus), {"placement": "static"})
    for action in ("on_poweroff", "on_reboot", "on_crash"):
        _set_text(root, action, "destroy")

    meta = _child(root, "metadata")
    for old in meta.findall(_q("instance")):
        meta.remove(old)
    meta.append(metadata_element(plan.labels, plan.created_at))

    os_el = _child(root, "os")
    type_el = _child(os_el, "type")
    type_el.text = "hvm"
    if opts.machine:
        type_el.set("machine", opts.machine)
    if opts.firmware == "efi":
        os_el.set("firmware", "efi")
    if opts.kernel:
        for tag in ("kernel", "initrd", "cmdline", "boot"):
            for el in os_el.findall(tag):
                os_el.remove(el)
        ET.SubElement(os_el, "kernel").text = opts.kernel
        if opts.initrd:
            ET.SubElement(os_el, "initrd").text = opts.initrd
        if opts.cmdline:
            ET.SubElement(os_el, "cmdline").text = opts.cmdline
    elif os_el.find("boot") is None:
        ET.SubElement(os_el, "boot", {"dev": "hd"})
    _child(_child(root, "features"), "acpi")

    devices = _child(root, "devices")
    prefix = {"virtio": "vd", "sata": "sd", "scsi": "sd"}[opts.disk_bus]
    if opts.disk_bus == "scsi" and devices.find("controller[@type='scsi']") is None:
        ET.SubElement(devices, "controller", {"type": "scsi", "model": "virtio-scsi"})
    disk = ET.SubElement(devices, "disk", {"type": "volume", "device": "disk"})
    ET.SubElement(disk, "driver", {"name": "qemu", "type": "qcow2", "discard": "unmap"})
    ET.SubElement(disk, "source", {"pool": plan.storage_pool, "volume": plan.overlay_volume})
    ET.SubElement(disk, "target", {"dev": f"{prefix}a", "bus": opts.disk_bus})

    if opts.seed_device == "disk":
        seed = ET.SubElement(devices, "disk", {"type": "volume", "device": "disk"})
        ET.SubElement(seed, "driver", {"name": "qemu", "type": "raw"})
        ET.SubElement(seed, "source", {"pool": plan.storage_pool, "volume": plan.seed_volume})
        ET.SubElement(seed, "target", {"dev": f"{prefix}b", "bus": opts.disk_bus})
    else:
        q35 = bool(opts.machine and "q35" in opts.machine)
        seed = ET.SubElement(devices, "disk", {"type": "volume", "device": "cdrom"})
        ET.SubElement(seed, "driver", {"name": "qemu", "type": "raw"})
        ET.SubElement(seed, "source", {"pool": plan.storage_pool, "volume": plan.seed_volume})
        ET.SubElement(seed, "target", {"dev": "sdz" if q35 else "hdc", "bus": "sata" if q35 else "ide"})
    ET.SubElement(seed, "readonly")

    if opts.network is not None:
        nic = ET.SubElement(devices, "interface", {"type": "network"})
        ET.SubElement(nic, "source", {"network": opts.network})
        ET.SubElement(nic, "model", {"type": "virtio"})
    elif opts.bridge is not None:
        nic = ET.SubElement(devices, "interface", {"type": "bridge"})
        ET.SubElement(nic, "source", {"bridge": opts.bridge})
        ET.SubElement(nic, "model", {"type": "virtio"})

    if plan.serial_log is not None:
        for tag in ("serial", "console"):
            for el in devices.findall(tag):
                devices.remove(el)
        serial = ET.SubElement(devices, "serial", {"type": "file"})
        ET.SubElement(serial, "source", {"path": plan.serial_log})
        ET.SubElement(serial, "target", {"port": "0"})
    elif devices.find("serial") is None and devices.find("console") is None:
        serial = ET.SubElement(devices, "serial", {"type": "pty"})
        ET.SubElement(serial, "target", {"port": "0"})
    return ET.tostring(root, encoding="unicode")


def domain_disk_volumes(xml_text: str) -> list[tuple[str, str]]:
    """(pool, volume) of each volume-backed disk of a domain XML."""
    root = ET.fromstring(xml_text)  # noqa: S314 (libvirtd's own XML)
    out = []
    for src in root.findall("devices/disk/source"):
        pool, vol = src.get("pool"), src.get("volume")
        if pool and vol:
            out.append((pool, vol))
    return out
