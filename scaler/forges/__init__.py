"""Forge adapters. ``build_forge`` picks the module for a config's ``type``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from scaler.forges.base import Delivery, ForgeAdapter, RunnerInfo, RunnerLaunch

if TYPE_CHECKING:
    from scaler.config import ForgeConfig

# type -> "module:factory". The core's own adapters, imported lazily so that a
# deployment pays only for the forge it uses.
FORGE_TYPES = {
    "gitea": "scaler.forges.gitea:GiteaForge",
    "forgejo": "scaler.forges.forgejo:ForgejoForge",
    "github": "scaler.forges.github:GitHubForge",
    "fake": "scaler.testing.fake_forge:FakeForge",
}


def build_forge(config: ForgeConfig) -> ForgeAdapter:
    module_name, attr = FORGE_TYPES[config.type].split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    adapter: ForgeAdapter = factory(config)
    return adapter


__all__ = ["FORGE_TYPES", "Delivery", "ForgeAdapter", "RunnerInfo", "RunnerLaunch", "build_forge"]
