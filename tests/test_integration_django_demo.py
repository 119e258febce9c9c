"""`make demo-django`: the example served by runserver under auditrail-instrument, driven over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("hijack", reason="django-hijack is in the dev extras: pip install -e '.[dev]'")

REPO = Path(__file__).resolve().parents[1]


def test_demo_django_records_the_story_over_http_and_verifies(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDITRAIL_", "OTEL_"))}
    env["AUDITRAIL_DEMO_DIR"] = str(tmp_path / "demo")
    done = subprocess.run([sys.executable, str(REPO / "examples" / "django_admin" / "demo.py")], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "verify: OK" in out and "23 audit events" in out
    for event in ("auth.login.failed", "admin.impersonation.start", "admin.action", "policy.delete", "auth.logout"):
        assert event in out
    assert "bob (via admin)" in out  # the change made as bob inside the hijack, linked
    assert not (REPO / "examples" / "django_admin" / ".auditrail").exists()  # the spool went to the demo's folder
