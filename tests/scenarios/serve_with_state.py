"""``runner-scaler serve`` over the file-backed forge and provider: the
process the SIGKILL scenario kills. Usage:
``python -m tests.scenarios.serve_with_state CONFIG STATE_DIR PORT``."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from scaler import logging as slog
from scaler.app import Scaler
from scaler.config import load_config
from scaler.provider import ProviderSettings
from scaler.web import create_app
from tests.scenarios.filestate import FileForge, FileProvider, FileState


def main(argv: list[str]) -> int:
    config_path, state_dir, port = argv[0], Path(argv[1]), int(argv[2])
    config = load_config(config_path)
    slog.configure(config.logging.level, "json")
    files = FileState(state_dir)
    pc = config.providers[0]
    provider = FileProvider(ProviderSettings(pc.name, pc.type, config.controller_id, dict(pc.options)), files, config)
    forge = FileForge(config.forges[0], files)
    scaler = Scaler(config, forges={forge.name: forge}, providers={pc.name: provider})
    uvicorn.run(create_app(scaler), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
