"""Shared fixtures: a real audit pipeline with the SDK's in-memory exporter, and importable app modules."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

import auditrail
from auditrail.config import parse_config
from auditrail.instrumentor import AuditInstrumentor


class Audit:
    """An instrumented process in miniature: load audit.yaml text, call things, read the records back."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.exporter = InMemoryLogRecordExporter()
        self.instrumented = False

    def module(self, name: str, source: str) -> None:
        """Write `name` (dotted) as a real module under tmp_path; importing it is left to the test."""
        path = self.tmp_path.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(self.tmp_path).parents:
            init = self.tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        path.write_text(textwrap.dedent(source))

    def instrument(self, yaml_text: str) -> None:
        """Start auditing with this audit.yaml text."""
        config = parse_config(textwrap.dedent(yaml_text), filename=str(self.tmp_path / "audit.yaml"))
        AuditInstrumentor().instrument(config=config, exporter=self.exporter)
        self.instrumented = True

    def records(self) -> list[Any]:
        """Every exported SDK record so far."""
        assert auditrail.flush(10)
        return list(self.exporter.get_finished_logs())

    def events(self) -> list[dict[str, Any]]:
        """Exported records as flat dicts: event name, attributes, payload parsed."""
        out = []
        for r in self.records():
            attrs = dict(r.log_record.attributes)
            out.append({
                "event": r.log_record.event_name,
                "attrs": attrs,
                "payload": json.loads(attrs["audit.payload"]),
                "severity": r.log_record.severity_text,
                "record": r,
            })
        return out

    def one(self, event: str) -> dict[str, Any]:
        """The single exported event of this type."""
        found = [e for e in self.events() if e["event"] == event]
        assert len(found) == 1, f"expected one {event}, got {[e['event'] for e in self.events()]}"
        return found[0]


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[Audit]:
    """A fresh Audit harness; uninstruments and forgets the test's modules afterwards."""
    sys.path.insert(0, str(tmp_path))
    before = set(sys.modules)
    harness = Audit(tmp_path)
    try:
        yield harness
    finally:
        if harness.instrumented:
            AuditInstrumentor().uninstrument()
        sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if getattr(module, "__file__", None) and str(tmp_path) in str(module.__file__):
                del sys.modules[name]
