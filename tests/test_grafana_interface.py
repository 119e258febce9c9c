"""The Grafana interface's per-request shortcuts, in-process on a real store: what they keep must never widen what a
request sees.

The interface answers a small result in one write with Content-Length (a larger one streams in chunks), works
a token's session settings out once per table list, and keeps a statement's verdict by its shape (integer
literals masked: each Grafana refresh sends new time bounds). Over HTTP with real clients (http.client on a
raw socket, clickhouse-connect) against GrafanaInterface on a chDB store in this process, where the tests can
also create tables while it serves.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    from auditrail_store.db import Store
    from auditrail_store.grafana import GrafanaInterface
    from auditrail_store.migrate import migrate
    from auditrail_store.tokens import TokenStore

    directory = tmp_path_factory.mktemp("interface")
    with Store.open(f"chdb://{directory}/store") as store:
        migrate(store)
        tokens = TokenStore(store)
        interface = GrafanaInterface(str(directory / "store"), store.database, tokens).start()
        try:
            acme, _ = tokens.create("acme", "read")
            everyone, _ = tokens.create("*", "read")
            yield store, interface, acme, everyone
        finally:
            interface.close()


def client(interface, token: str):
    port = int(interface.url.rsplit(":", 1)[1])
    return clickhouse_connect.get_client(host="127.0.0.1", port=port, username="grafana", password=token,
                                         database="auditrail")


def post(interface, token: str, sql: str) -> http.client.HTTPResponse:
    host, port = interface.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/?default_format=RowBinary", body=sql, headers={"X-ClickHouse-Key": token})
    return connection.getresponse()


def test_a_small_result_goes_whole_with_its_length_and_a_large_one_streams_in_chunks(served) -> None:
    _, interface, acme, _ = served
    small = post(interface, acme, "SELECT number FROM numbers(10)")
    assert small.status == 200 and small.getheader("Transfer-Encoding") is None
    assert int(small.getheader("Content-Length")) == 80 == len(small.read())
    # Several of the engine's blocks: chunked, every row there, in order.
    large = post(interface, acme, "SELECT number FROM numbers(900000)")
    assert large.status == 200 and large.getheader("Transfer-Encoding") == "chunked"
    data = large.read()
    assert len(data) == 900_000 * 8
    assert int.from_bytes(data[-8:], "little") == 899_999
    empty = post(interface, acme, "SELECT number FROM numbers(10) WHERE number > 100")
    assert empty.status == 200 and empty.getheader("Content-Length") == "0" and empty.read() == b""


def test_a_client_that_waits_for_100_continue_gets_it_before_sending_the_body(served) -> None:
    _, interface, acme, _ = served
    host, port = interface.url.removeprefix("http://").split(":")
    body = b"SELECT 42"
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nX-ClickHouse-Key: " + acme.encode()
                     + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n")  # replies are buffered: this one is not
        sock.sendall(body)
        answer = b""
        while not answer.endswith(b"42\n"):
            answer += sock.recv(1024)
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_table_made_while_serving_is_scoped_once_the_table_list_is_read_again(served) -> None:
    store, interface, acme, everyone = served
    tenant, every = client(interface, acme), client(interface, everyone)
    assert tenant.query("SELECT count() FROM audit_events").result_rows == [(0,)]  # the settings worked out
    store.command("CREATE TABLE auditrail.made_later (tenant_id String, v UInt8) ENGINE = MergeTree ORDER BY ()")
    store.command("INSERT INTO auditrail.made_later VALUES ('acme', 1), ('globex', 2)")
    time.sleep(5.5)  # the table list is read again every 5 s
    assert tenant.query("SELECT tenant_id, v FROM made_later").result_rows == [("acme", 1)]
    assert sorted(every.query("SELECT tenant_id, v FROM made_later").result_rows) == [("acme", 1), ("globex", 2)]
    store.command("DROP TABLE auditrail.made_later")


def test_a_refresh_with_new_time_bounds_reuses_the_statement_check_refusals_stay_refused(served) -> None:
    _, interface, acme, _ = served
    tenant = client(interface, acme)
    panel = ("SELECT count() FROM audit_events_unique WHERE timestamp >= toDateTime({}) AND timestamp <= "
             "toDateTime({}) AND 1=1")
    kept = len(interface._verdicts._items)
    for start in range(1733580000, 1733580000 + 60 * 5, 60):  # five refreshes, a minute apart
        assert tenant.query(panel.format(start, start + 86400)).result_rows == [(0,)]
    assert len(interface._verdicts._items) == kept + 1  # one EXPLAIN AST for the five
    for sql in ("SELECT count() FROM merge(auditrail, '^audit_events$') WHERE 1 = {}",
                "SELECT count() FROM mergeTreeIndex('auditrail', 'audit_events') LIMIT {}"):
        for n in (1, 2, 1):
            with pytest.raises(DatabaseError, match="not available"):
                tenant.query(sql.format(n))
    for sql in ("KILL QUERY WHERE elapsed > {}", "SET param_x = {}"):
        for n in (1, 2):
            with pytest.raises(DatabaseError, match="only SELECT"):
                tenant.command(sql.format(n))
    # A shape passed for an all-tenant token is not passed for a one-tenant one (SHOW CREATE): the first gets
    # to the engine (no such table), the second is refused before it.
    every = client(interface, served[3])
    with pytest.raises(DatabaseError, match="doesn.t exist"):
        every.command("SHOW CREATE TABLE `1`")
    with pytest.raises(DatabaseError, match="SHOW CREATE is not available"):
        tenant.command("SHOW CREATE TABLE `2`")


def test_a_revoked_token_stops_working_at_once_here_and_within_the_cache_time_elsewhere(served) -> None:
    from auditrail_store.tokens import TokenStore

    store, interface, _, _ = served
    for revoker in (interface.tokens, TokenStore(store)):  # this service's token store, then another replica's
        token, info = interface.tokens.create("acme", "read")
        assert post(interface, token, "SELECT 1").status == 200
        revoker.revoke(info.token_id)
        started = time.monotonic()
        while post(interface, token, "SELECT 1").status == 200:
            assert time.monotonic() - started < 6, "a revoked token still works after the 5 s cache"
            time.sleep(0.2)
        assert revoker is not interface.tokens or time.monotonic() - started < 1
        assert post(interface, token, "SELECT 1").status == 401
