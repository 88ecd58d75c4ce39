"""An ASGI app served by uvicorn on a loopback port in a daemon thread.

The fakes (forge, Kubernetes API server) run this way inside a test process,
so a test talks to them over real sockets while driving the scaler itself.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class ThreadedServer:
    """uvicorn in a thread: ``start`` returns once it accepts connections."""

    def __init__(self, app: Any, what: str, **config: Any) -> None:
        self.app = app
        self.what = what  # for the error when it does not start
        self.config = {"log_level": "warning", "access_log": False, **config}
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self, port: int = 0, timeout: float = 10.0) -> int:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, **self.config))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.what} did not start on 127.0.0.1:{self.port}")
            time.sleep(0.01)
        return self.port

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=timeout)
