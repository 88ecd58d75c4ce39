"""Docker provider: ephemeral runners as containers through the Engine API.

Entry point ``docker = "providers.docker:DockerProvider"``; example config in
``examples/docker/config.yaml``.

* Engines: ``hosts[]`` of ``unix:///…`` or ``tcp://host:port`` (+ ``tls`` client
  certificates), placement ``spread`` (fewest runners) or ``pack`` (fullest host
  with room), a per-host cap (``max_per_host`` / ``hosts[].max_instances``). A
  host that stops answering is skipped for new runners; what it held stays in
  ``list()`` as last seen until it answers again, then it is re-listed.
* One container per runner, named after the runner; credential files go in
  through ``PUT /containers/{id}/archive`` (mode 0600, owner from the pool's
  ``user`` / ``file_owner``) before start, never through the environment.
* Stamps: the launch spec's labels plus ``runner-scaler.io/provider`` (the
  provider entry) and ``runner-scaler.io/docker-host`` (the host entry); each
  entry lists only its own containers, so one engine may sit under two names.
* Exits: the events stream (``die``/``oom``/``destroy``, reconnect with back-off
  and ``since``, re-list on every reconnect) feeds ``watch()``; a periodic
  re-list (``resync_interval``) backs it up. OOM kills are ``FAILED`` with
  reason ``OOMKilled``.
* ``delete`` is force + anonymous volumes; a missing (or foreign) container is
  success. ``create`` of an existing name adopts it (and finishes a create that
  never started).
"""

from providers.docker._options import DockerPoolOptions, DockerSettings, HostConfig, HostTLS, Mount, Resources
from providers.docker._placement import HostLoad, choose_host
from providers.docker._provider import LABEL_HOST, LABEL_PROVIDER, DockerProvider

__all__ = [
    "LABEL_HOST",
    "LABEL_PROVIDER",
    "DockerPoolOptions",
    "DockerProvider",
    "DockerSettings",
    "HostConfig",
    "HostLoad",
    "HostTLS",
    "Mount",
    "Resources",
    "choose_host",
]
