"""Validated settings of a libvirt provider and of each pool using it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LibvirtHost(_Model):
    """One hypervisor. ``max_vcpus`` / ``max_memory_mib`` cap what the scaler
    places there (0 = the host's own CPU count / memory)."""

    uri: str = Field(min_length=1, description="e.g. qemu:///system, qemu+ssh://user@host/system")
    max_vcpus: int = Field(default=0, ge=0)
    max_memory_mib: int = Field(default=0, ge=0)


class LibvirtSettings(_Model):
    hosts: tuple[LibvirtHost, ...] = Field(min_length=1)
    # Storage pool (on every host) holding base images, overlays and seeds.
    storage_pool: str = "default"
    # Seconds between backstop ``list`` passes inside ``watch()``.
    list_interval: float = Field(default=15.0, gt=0)
    # Seconds a libvirt call (connect included) may take before the host is
    # treated as unreachable for this call.
    call_timeout: float = Field(default=60.0, gt=0)
    # Parallel blocking libvirt calls (a thread pool per provider).
    max_concurrency: int = Field(default=8, ge=1, le=64)
    # libvirtd serves at most ``max_client_requests`` (default 5) calls of one
    # connection at a time; creates are spread over this many connections per
    # host so a burst is not queued behind that limit.
    connections_per_host: int = Field(default=4, ge=1, le=16)

    @model_validator(mode="after")
    def _unique_uris(self) -> LibvirtSettings:
        uris = [h.uri for h in self.hosts]
        if len(set(uris)) != len(uris):
            raise ValueError("hosts: each uri may appear once")
        return self


class LibvirtPoolOptions(_Model):
    """A pool's ``provider_options`` for libvirt."""

    # Base image: a volume name in the storage pool (or an absolute path of a
    # volume). ``LaunchSpec.image`` wins when set.
    base_image: str | None = None
    vcpus: int = Field(default=2, ge=1, le=256)
    memory_mib: int = Field(default=2048, ge=64)
    # "kvm" in production; "qemu" (TCG) where there is no /dev/kvm.
    domain_type: Literal["kvm", "qemu"] = "kvm"
    machine: str | None = None  # e.g. "q35"; libvirt's default when unset
    # A domain XML to start from (path on the scaler's filesystem, or inline).
    # The provider sets name, memory, vCPUs, type and metadata, and adds the
    # overlay disk, the seed and (optionally) the NIC and serial log.
    template: str | None = None
    template_inline: str | None = None
    # At most one of these: a libvirt network name or a host bridge.
    network: str | None = None
    bridge: str | None = None
    firmware: Literal["bios", "efi"] = "bios"
    # Direct kernel boot (fast test guests, or images without a bootloader).
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    disk_bus: Literal["virtio", "sata", "scsi"] = "virtio"
    # How the seed is attached: a virtio disk works with cloud-init's NoCloud
    # (it looks for the ``cidata`` label on any block device).
    seed_device: Literal["disk", "cdrom"] = "disk"
    seed: Literal["cloud-init", "metadata-url"] = "cloud-init"
    metadata_url: str | None = None
    # Host directory for per-domain serial logs (``<dir>/<name>.log``).
    serial_log_dir: str | None = None
    # Overlay virtual size in GiB (0 = the base image's size).
    disk_size_gib: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> LibvirtPoolOptions:
        if self.template is not None and self.template_inline is not None:
            raise ValueError("set template or template_inline, not both")
        if self.network is not None and self.bridge is not None:
            raise ValueError("set network or bridge, not both")
        if self.initrd is not None and self.kernel is None:
            raise ValueError("initrd needs kernel")
        if self.seed == "metadata-url":
            raise ValueError(
                "seed: metadata-url is not served by this version of runner-scaler; use cloud-init"
            )
        if self.metadata_url is not None:
            raise ValueError("metadata_url: only meaningful with seed: metadata-url (not supported yet)")
        return self
