"""The test harness: a real audit pipeline (SDK in-memory exporter) and app modules written to tmp_path."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class Audit:
    """An instrumented process in miniature: audit.yaml text in, exported audit events out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.exporter = InMemoryLogRecordExporter()
        self.instrumented = False

    def app(self, files: dict[str, str]) -> None:
        """Write the app's modules (importing them is left to the test, after `instrument`)."""
        write_package(self.root, files)

    def module(self, name: str, source: str) -> None:
        """Write one module by its dotted name."""
        self.app({name.replace(".", "/") + ".py": source})

    def instrument(self, yaml_text: str) -> None:
        """Start auditing with this audit.yaml text."""
        config = parse_config(textwrap.dedent(yaml_text), filename=str(self.root / "audit.yaml"))
        AuditInstrumentor().instrument(config=config, exporter=self.exporter)
        self.instrumented = True

    def stop(self) -> None:
        """Stop auditing (flushes and writes the final checkpoint) before the test ends."""
        if self.instrumented:
            AuditInstrumentor().uninstrument()
            self.instrumented = False

    @property
    def counters(self) -> Any:
        """The active recorder's failure counters."""
        return runtime.recorder.counters

    def records(self) -> list[Any]:
        """Every exported SDK record so far (after a flush)."""
        assert auditrail.flush(10), "audit events were not exported within 10 s"
        return list(self.exporter.get_finished_logs())

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        """Exported records as {event, attrs, payload, severity, record}, optionally of one event type."""
        out = []
        for record in self.records():
            log = record.log_record
            attrs = dict(log.attributes or {})
            if event is None or log.event_name == event:
                out.append({"event": log.event_name, "attrs": attrs, "payload": json.loads(attrs["audit.payload"]),
                            "severity": log.severity_text, "record": record})
        return out

    def one(self, event: str) -> dict[str, Any]:
        """The single exported event of this type."""
        found = self.events(event)
        assert len(found) == 1, f"expected one {event}, got {[e['event'] for e in self.events()]}"
        return found[0]


def audit_fixture(tmp_path: Path) -> Iterator[Audit]:
    """Body of the `audit` fixture: uninstruments and forgets the test's modules afterwards."""
    sys.path.insert(0, str(tmp_path))
    harness = Audit(tmp_path)
    try:
        yield harness
    finally:
        harness.stop()
        sys.path.remove(str(tmp_path))
        forget_modules(tmp_path)
