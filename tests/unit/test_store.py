"""The store's table families over one database (in-memory SQLite): a decision commits its
rows in every family or in none, and the retention purge touches the idempotency tables only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from gridbus.contracts.state import Cancel, Decision, Schedule
from gridbus.workers.store import Store

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))
TABLES = ("effects", "outcomes", "revisions", "attempts", "records", "decisions", "schedules", "journal")


@pytest.fixture
def store():
    s = Store("sqlite:///:memory:")
    yield s
    s.close()


def row_counts(store) -> dict[str, int]:
    return {table: store.db.query(f"SELECT count(*) FROM {table}")[0][0] for table in TABLES}


def test_a_decision_failing_midway_leaves_none_of_its_rows_in_any_family(store):
    decision = Decision(result={"answer": "accepted"})
    decision.put("binding", "U1", {"state": "bound"}, ref="C1")
    decision.change(["U1"], "bound")
    decision.schedules.append(Schedule("gridbus.due", "ok", NOW, {"n": 1}, ("U1",)))
    decision.schedules.append(Schedule("gridbus.due", "bad", NOW, {"n": {1, 2}}, ("U1",)))  # a set is not JSON
    with pytest.raises(TypeError):
        store.state.commit_decision("r", "m1", decision, {}, NOW)
    assert row_counts(store) == dict.fromkeys(TABLES, 0)
    assert store.state.decision("r", "m1") is None and store.journal.trace("U1") == []


def test_a_decision_refused_after_its_first_write_leaves_nothing_written(store):
    earlier = Decision()
    earlier.put("binding", "U3", {"state": "taken"})
    earlier.schedules.append(Schedule("gridbus.due", "U3", NOW, {}, ("U3",)))
    assert store.state.commit_decision("r", "m0", earlier, {}, NOW)
    before = row_counts(store)
    decision = Decision()
    decision.put("binding", "U1", {"state": "a"})  # written without being read: goes in first
    decision.put("binding", "U3", {"state": "b"})  # read as absent, but m0 created it
    decision.cancels.append(Cancel("gridbus.due", "U3"))
    decision.schedules.append(Schedule("gridbus.due", "U1", NOW, {}, ("U1",)))
    decision.change(["U1"], "bound")
    assert not store.state.commit_decision("r", "m1", decision, {("binding", "U3"): 0}, NOW)
    assert row_counts(store) == before
    assert store.state.get_record("binding", "U1") is None and store.state.decision("r", "m1") is None
    assert [s.key for s in store.schedules.pending()] == ["U3"]


def test_the_retention_purge_forgets_only_the_idempotency_tables(store):
    decision = Decision(result={"ok": True})
    decision.put("binding", "U1", {"state": "bound"})
    decision.change(["U1"], "bound")
    decision.schedules.append(Schedule("gridbus.due", "U1", NOW, {}, ("U1",)))
    assert store.state.commit_decision("r", "m1", decision, {}, NOW)
    store.idempotency.record(effects=[("r", "m1", "mkt")], outcomes=[("r", "m1", "delivered")])
    assert store.idempotency.claim_revision("r", "HV1", 1, "m1")
    store.idempotency.begin_attempt("r", "m2")
    assert store.idempotency.purge_older_than(-1) == 3
    assert row_counts(store) == {
        "effects": 0, "outcomes": 0, "attempts": 0,
        "revisions": 1, "records": 1, "decisions": 1, "schedules": 1, "journal": 2,
    }
