"""An export the engine fails half-way is cut for the client, never ended as if complete.

The service runs in a subprocess (the real app under uvicorn) that can also reach its own engine: on a line
of stdin it cancels the running export queries with ``KILL QUERY``, what an operator (or a server going
down) does to a query. chDB lets one process own a data directory, so the kill must come from that process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from test_store_export_scale import fill_store
from test_store_service import free_port

EVENTS = 100_000  # 90,000 of tenant "big": ~30 MB of CSV, far more than the sockets buffer
PYTHON = sys.executable

_SERVE = """
import sys, threading, uvicorn
from auditrail_store.db import Store
from auditrail_store.service import create_app
from auditrail_store.tokens import TokenStore
url, port = sys.argv[1], int(sys.argv[2])
with Store.open(url) as store:
    print(TokenStore(store).create("big", "read")[0], flush=True)
server = uvicorn.Server(uvicorn.Config(create_app(url), host="127.0.0.1", port=port, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
for line in sys.stdin:
    with Store.open(url) as store:
        store.command("KILL QUERY WHERE query LIKE '%audit_events%' AND query NOT LIKE '%KILL QUERY%' ASYNC")
    print("killed", flush=True)
"""


def test_an_export_the_engine_fails_mid_stream_is_cut_not_ended(tmp_path: Path) -> None:
    env = fill_store(tmp_path, EVENTS)
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen([PYTHON, "-c", _SERVE, env["AUDITRAIL_CLICKHOUSE_URL"], str(port)], env=env,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert process.stdin is not None and process.stdout is not None
    try:
        token = process.stdout.readline().strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=60, transport=httpx.HTTPTransport(retries=50)) as client:  # (until it listens)
            for fmt in ("csv", "json"):  # raw_stream and block-stream reads of the engine
                complete = client.get("/v1/tenants/big/events", params={"format": fmt})
                assert complete.status_code == 200
                if fmt == "csv":
                    assert complete.text.count("\n") == EVENTS * 9 // 10 + 1
                else:
                    assert len(complete.json()["events"]) == EVENTS * 9 // 10
                with client.stream("GET", "/v1/tenants/big/events", params={"format": fmt}) as response:
                    assert response.status_code == 200
                    chunks = response.iter_raw()
                    received = len(next(chunks))
                    process.stdin.write("kill\n")
                    process.stdin.flush()
                    assert process.stdout.readline().strip() == "killed"
                    with pytest.raises(httpx.RemoteProtocolError):  # "incomplete chunked read": no clean end
                        for chunk in chunks:
                            received += len(chunk)
                assert received < len(complete.content), fmt
    finally:
        process.kill()
        process.wait()
    logged = log.read_text()
    assert logged.count("export of tenant 'big' aborted after") == 2 and "QUERY_WAS_CANCELLED" in logged, logged
    assert token.split("_", 2)[2] not in logged
