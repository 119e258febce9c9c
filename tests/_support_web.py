"""Helpers for the request-capture tests: a real audit pipeline, app packages in tmp_path, servers in threads.

(tests/conftest.py already existed when these were written, so they live here and are imported by name.)
"""

from __future__ import annotations

import json
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

import auditrail
from auditrail import runtime
from auditrail.config import parse_config
from auditrail.instrumentor import AuditInstrumentor


def write_package(root: Path, files: dict[str, str]) -> None:
    """Write {"pkg/mod.py": source} under root, adding the __init__.py files a package needs."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        parent = path.parent
        while parent != root:
            init = parent / "__init__.py"
            if not init.exists():
                init.write_text("")
            parent = parent.parent
        path.write_text(textwrap.dedent(source))


def forget_modules(root: Path) -> None:
    """Drop every module loaded from under `root` (namespace packages included) from sys.modules."""
    prefix = str(root)
    for name, module in list(sys.modules.items()):
        places = [str(getattr(module, "__file__", None) or ""), *map(str, getattr(module, "__path__", None) or ())]
        if any(place.startswith(prefix) for place in places):
            del sys.modules[name]


def forget_package(name: str) -> None:
    """Drop a top-level package and its submodules from sys.modules."""
    for loaded in list(sys.modules):
        if loaded == name or loaded.startswith(name + "."):
            del sys.modules[loaded]


class WebAudit:
    """An instrumented process in miniature: audit.yaml text in, exported audit events out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.exporter = InMemoryLogRecordExporter()
        self.instrumented = False

    def app(self, files: dict[str, str]) -> None:
        """Write the app's modules (importing them is left to the test, after `instrument`)."""
        write_package(self.root, files)

    def instrument(self, yaml_text: str) -> None:
        config = parse_config(textwrap.dedent(yaml_text), filename=str(self.root / "audit.yaml"))
        AuditInstrumentor().instrument(config=config, exporter=self.exporter)
        self.instrumented = True

    @property
    def counters(self) -> Any:
        return runtime.recorder.counters

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Exported records as {event, attrs, payload}, optionally only those of one event type."""
        assert auditrail.flush(10), "audit events were not exported within 10 s"
        out = []
        for record in self.exporter.get_finished_logs():
            log = record.log_record
            attrs = dict(log.attributes or {})
            if event is None or log.event_name == event:
                out.append({"event": log.event_name, "attrs": attrs, "payload": json.loads(attrs["audit.payload"])})
        return out

    def one(self, event: str) -> dict[str, Any]:
        found = self.events(event)
        assert len(found) == 1, f"expected one {event}, got {[e['event'] for e in self.events()]}"
        return found[0]


@pytest.fixture
def web_audit(tmp_path: Path) -> Iterator[WebAudit]:
    """A WebAudit rooted at tmp_path (on sys.path); uninstruments and forgets the app's modules afterwards."""
    sys.path.insert(0, str(tmp_path))
    harness = WebAudit(tmp_path)
    try:
        yield harness
    finally:
        if harness.instrumented:
            AuditInstrumentor().uninstrument()
        sys.path.remove(str(tmp_path))
        forget_modules(tmp_path)


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


def serve_asgi(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 (ephemeral port); returns (base URL, stop)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # proxy_headers off: uvicorn would otherwise rewrite the client from X-Forwarded-For for 127.0.0.1.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", proxy_headers=False, access_log=False)
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
