"""The retention purge runs in the worker's loop in small chunks, one per turn, until nothing
older than the retention is left: no turn holds the loop for a whole purge."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from tests.support.amqp import declare_routes, running_worker, wait_for
from tests.support.routes import AMQP_ONLY_NOTES
from gridbus.workers.store import Store

pytestmark = pytest.mark.broker


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield Store(f"sqlite:///{tmp_path}/store.sqlite3")
        return
    pg_url = request.getfixturevalue("pg_url")
    schema = f"gridbus_t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    s = Store(f"{pg_url}?options=-csearch_path%3D{schema}")
    yield s
    s.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def rows(store, table: str, where: str = "") -> int:
    return store.db.query(f"SELECT count(*) FROM {table} {where}")[0][0]


def test_many_expired_rows_are_purged_a_chunk_per_turn_and_fresh_rows_are_kept(broker_url, store, monkeypatch):
    old = time.time() - 2 * 86400
    with store.db.transaction() as cur:
        cur.executemany(
            store.db.sql("INSERT INTO outcomes (route, message_id, outcome, at) VALUES ({p}, {p}, {p}, {p})"),
            [("r", f"old{i}", "delivered", old) for i in range(1050)],
        )
        cur.executemany(
            store.db.sql("INSERT INTO effects (route, message_id, step, at) VALUES ({p}, {p}, {p}, {p})"),
            [("r", f"part{i}", "mkt", old) for i in range(500)],
        )
        cur.executemany(
            store.db.sql("INSERT INTO attempts (route, message_id, starts, at) VALUES ({p}, {p}, 1, {p})"),
            [("r", f"crash{i}", old) for i in range(20)],
        )
    store.idempotency.record(effects=[("r", f"fresh-part{i}", "mkt") for i in range(10)],
                 outcomes=[("r", f"fresh{i}", "delivered") for i in range(10)])
    store.idempotency.begin_attempt("r", "fresh-crash")

    calls: list[int] = []
    purge = store.idempotency.purge_older_than

    def spy(seconds, limit=None):
        calls.append(removed := purge(seconds, limit))
        assert limit == 100, "the worker purges in chunks"
        return removed

    monkeypatch.setattr(store.idempotency, "purge_older_than", spy)
    declare_routes(broker_url, [AMQP_ONLY_NOTES])
    with running_worker([AMQP_ONLY_NOTES], broker_url, store, retention_s=86400, purge_chunk_rows=100):
        wait_for(lambda: calls and calls[-1] < 100, timeout=30, what="the purge to finish")
        finished = len(calls)
        time.sleep(0.5)
        assert len(calls) == finished, "one purge an interval: the next waits for purge_interval_s"
    assert max(calls) <= 100
    assert sum(calls) == 1050 + 500 + 20
    assert len(calls) == 16  # 1,570 rows: 15 full chunks, then one that found 70 left
    assert rows(store, "outcomes") == 10 and rows(store, "effects") == 10 and rows(store, "attempts") == 1
