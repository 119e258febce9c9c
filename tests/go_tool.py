"""The Go toolchain, for the tests and benchmarks that build or test Go code (tests/grafana_go, collector-config)."""

from __future__ import annotations

import os
import shutil


def find_go() -> str | None:
    """go on the PATH, or where these machines install it; None without it."""
    return shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)


def go_binary(needed_by: str) -> str:
    """find_go(), or skip the calling test, saying that `needed_by` needs Go."""
    found = find_go()
    if found is None:
        import pytest

        pytest.skip(f"Go is not installed: {needed_by} needs it")
    return found
