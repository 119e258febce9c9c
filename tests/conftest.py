"""Shared fixtures; the harness itself is in harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Audit, audit_fixture


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[Audit]:
    """A real audit pipeline with the SDK's in-memory exporter, app modules under tmp_path."""
    yield from audit_fixture(tmp_path)


@pytest.fixture
def web_audit(tmp_path: Path) -> Iterator[Audit]:
    """The same harness, by the name the request-capture tests use."""
    yield from audit_fixture(tmp_path)
