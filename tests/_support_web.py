"""Helpers for the request-capture tests: a real audit pipeline, app packages in tmp_path, servers in threads.

The audit harness itself is harness.py's, shared with the other tests.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from harness import Audit as WebAudit, forget_modules, write_package  # noqa: F401 - re-exported for the tests


def forget_package(name: str) -> None:
    """Drop a top-level package and its submodules from sys.modules."""
    for loaded in list(sys.modules):
        if loaded == name or loaded.startswith(name + "."):
            del sys.modules[loaded]


# --- real servers on 127.0.0.1, in threads ---------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True


def serve_wsgi(app: Callable[..., Any]) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app with wsgiref on 127.0.0.1 (ephemeral port); returns (base URL, stop)."""
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_port}", stop


def serve_asgi(app: Any, lifespan: str = "off") -> tuple[str, Callable[[], None]]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (ephemeral port); returns (base URL, stop)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # proxy_headers off: uvicorn would otherwise rewrite the client from X-Forwarded-For for 127.0.0.1.
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, proxy_headers=False, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{port}", stop
