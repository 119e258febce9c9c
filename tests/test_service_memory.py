"""allocator.keep_request_memory: freed request bodies are reused by the next requests, not faulted in anew."""

from __future__ import annotations

import subprocess
import sys

import pytest

# 8 requests of ~4.3 MB in flight (a body joined from uvicorn's 64 KiB chunks, as service.py joins it), freed,
# then the next 8: the page faults one such round costs once the process is warm.
_ROUNDS = """
import resource, sys
from auditrail_store.allocator import keep_request_memory
if sys.argv[1] == "kept":
    assert keep_request_memory()
chunks = [bytes([i]) * 65536 for i in range(66)]
def round_():
    held = [b"".join(chunks) + bytes(k) for k in range(8)]
    del held
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults_per_round(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_request_bodies_reuse_freed_memory() -> None:
    # 8 x 4.3 MB is ~8,400 pages: glibc's defaults fault most of them in again every round
    assert _faults_per_round("default") > 4_000
    assert _faults_per_round("kept") < 500


def test_serve_keeps_request_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """`auditrail serve` sets the thresholds before uvicorn starts."""
    import uvicorn

    from auditrail_store import service

    calls: list[str] = []
    monkeypatch.setattr(service, "keep_request_memory", lambda: calls.append("memory") or True)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append("uvicorn"))
    service.serve(url="chdb:///nonexistent-never-opened")
    assert calls == ["memory", "uvicorn"]
