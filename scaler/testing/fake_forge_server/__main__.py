"""``python -m scaler.testing.fake_forge_server --kind gitea|forgejo|github``."""

from scaler.testing.fake_forge_server.server import main

raise SystemExit(main())
