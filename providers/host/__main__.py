"""``python -m providers.host supervise DIR``: the per-sandbox supervisor (see ``_supervisor``)."""

from __future__ import annotations

import sys

from providers.host._supervisor import main

if __name__ == "__main__":
    if sys.argv[1:2] != ["supervise"] or len(sys.argv) != 3:
        sys.exit("usage: python -m providers.host supervise INSTANCE_DIR (started by the host provider)")
    sys.exit(main(sys.argv[2:]))
