"""The Go unit tests of our collector components (collector-config/*/), run by `make test` through pytest, so
the googlechat exporter's budget, card and state tests and the other components' tests gate like the rest."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from go_tool import go_binary

COMPONENTS = sorted(p.parent for p in (Path(__file__).resolve().parent.parent / "collector-config").glob("*/go.mod"))


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda p: p.name)
def test_go_unit_tests_of_the_component_pass(component: Path) -> None:
    done = subprocess.run([go_binary("the collector components' unit tests"), "test", "-count=1", "./..."], cwd=component, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_every_component_with_go_code_is_tested() -> None:
    assert {p.name for p in COMPONENTS} >= {"googlechatexporter", "googlecloudexporter", "awscloudwatchlogsexporter"}
