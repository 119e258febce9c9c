"""Shared fixtures; the harness itself is in harness.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Audit, audit_fixture

# Services the tests start run no monthly close (reviews/schedule.py) unless a test asks for it: on the 1st of
# a month, yesterday's test events would otherwise get review.due events beside them, and counts would move.
os.environ.setdefault("AUDITRAIL_REVIEW_SCHEDULE", "off")


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[Audit]:
    """A real audit pipeline with the SDK's in-memory exporter, app modules under tmp_path."""
    yield from audit_fixture(tmp_path)


@pytest.fixture
def web_audit(tmp_path: Path) -> Iterator[Audit]:
    """The same harness, by the name the request-capture tests use."""
    yield from audit_fixture(tmp_path)
