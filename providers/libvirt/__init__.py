"""libvirt provider: one transient VM per runner on one or more hypervisors.

Modules: :mod:`.options` (settings and pool option models), :mod:`.domainxml`
(domain XML rendering and the ``<metadata>`` stamp), :mod:`.seed` (the
cloud-init NoCloud seed ISO), :mod:`.provider` (the provider itself).
"""

from providers.libvirt.options import LibvirtPoolOptions, LibvirtSettings
from providers.libvirt.provider import LibvirtProvider

__all__ = ["LibvirtPoolOptions", "LibvirtProvider", "LibvirtSettings"]
