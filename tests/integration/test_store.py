"""The store on SQLite and on the real PostgreSQL, and workers competing on one queue."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from tests.support.amqp import UpstreamSystem, body_json, declare_routes, inbox_reader, wait_for
from tests.support.processes import WorkerProcess
from tests.support.routes import AMQP_ONLY_NOTES, note_body
from gridbus.contracts.state import Cancel, Decision, Schedule
from gridbus.workers.store import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.sqlite3"
    else:
        url = request.getfixturevalue("pg_schema_url")
    s = Store(url)
    yield s
    s.close()


def test_effects_and_outcomes_are_recorded_once(store):
    assert store.idempotency.outcome("r", "m1") is None and store.idempotency.steps_done("r", "m1") == set()
    store.idempotency.record(effects=[("r", "m1", "a")])
    store.idempotency.record(effects=[("r", "m1", "a"), ("r", "m1", "b")], outcomes=[("r", "m1", "delivered")])
    store.idempotency.record(outcomes=[("r", "m1", "superseded")])  # the first outcome stands
    assert store.idempotency.steps_done("r", "m1") == {"a", "b"}
    assert store.idempotency.outcome("r", "m1") == "delivered"
    assert store.idempotency.outcome("other-route", "m1") is None


def test_sqlite_log_is_checkpointed_outside_the_commits(tmp_path):
    import time

    path = tmp_path / "store.sqlite3"
    store = Store(f"sqlite:///{path}")
    try:
        assert store.db.query("PRAGMA wal_autocheckpoint") == [(0,)]  # never inside a commit
        ids = [str(uuid.uuid4()) for _ in range(3000)]
        for i in range(0, len(ids), 100):
            store.idempotency.record(outcomes=[("r", m, "delivered") for m in ids[i:i + 100]])
        deadline = time.monotonic() + 10
        while store.db.checkpointer.copied_frames == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.db.checkpointer.copied_frames > 0
    finally:
        store.close()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    reopened = Store(f"sqlite:///{path}")
    try:
        assert reopened.idempotency.lookup(("r", m) for m in ids[::97]) == {("r", m): ("delivered", set()) for m in ids[::97]}
    finally:
        reopened.close()


def test_revisions_are_claimed_newest_first(store):
    assert store.idempotency.claim_revision("r", "HV1", 1, "m1")
    assert store.idempotency.claim_revision("r", "HV1", 3, "m3")
    assert not store.idempotency.claim_revision("r", "HV1", 2, "m2")
    assert not store.idempotency.claim_revision("r", "HV1", 3, "m3-other")  # same revision, another message
    assert store.idempotency.claim_revision("r", "HV1", 3, "m3")  # the same message again (a retry)
    assert store.idempotency.latest_revision("r", "HV1") == 3
    assert store.idempotency.claim_revision("r", "HV2", 2, "m4")  # keys are independent


def test_processing_starts_are_counted_until_the_message_ends(store):
    assert [store.idempotency.begin_attempt("r", "m") for _ in range(3)] == [1, 2, 3]
    store.idempotency.end_attempt("r", "m")
    assert store.idempotency.begin_attempt("r", "m") == 1


def test_old_entries_are_purged_after_the_retention(store):
    store.idempotency.record(effects=[("r", "m", "a")], outcomes=[("r", "m", "delivered")])
    assert store.idempotency.purge_older_than(3600) == 0
    assert store.idempotency.purge_older_than(-1) == 2
    assert store.idempotency.outcome("r", "m") is None


def test_concurrent_claims_on_postgresql_have_one_winner_per_revision(pg_schema_url):
    stores = [Store(pg_schema_url) for _ in range(4)]
    wins: list[int] = []
    barrier = threading.Barrier(len(stores))

    def claim(i, s):
        barrier.wait()
        if s.idempotency.claim_revision("r", "HV9", 5, f"m{i}"):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i, s)) for i, s in enumerate(stores)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert len(wins) == 1
    for s in stores:
        s.close()


def test_unknown_store_url_is_refused_with_the_accepted_forms():
    with pytest.raises(ValueError, match="sqlite:/// or postgresql://"):
        Store("mysql://nope")


@pytest.mark.broker
@pytest.mark.slow
def test_two_workers_compete_on_one_queue_with_a_shared_postgresql_store(broker_url, vhost, system_users,
                                                                         pg_schema_url, tmp_path):
    declare_routes(broker_url, [AMQP_ONLY_NOTES])
    pms = UpstreamSystem(vhost, *system_users["pms"])
    key = uuid.uuid4().hex
    message_id = str(uuid.uuid4())
    try:
        ids = [pms.publish("pms.out", "note.amqp", note_body(key, f"n{i}"), message_type="Note") for i in range(1000)]
        for _ in range(3):  # one message re-sent: whichever worker gets a copy must see the others
            pms.publish("pms.out", "note.amqp", note_body(key, "resent"), message_type="Note", message_id=message_id)
    finally:
        pms.close()
    workers = [
        WorkerProcess(broker_url, pg_schema_url, "tests.support.routes:SUBPROCESS_ROUTES", tmp_path / f"w{i}",
                      gridbus_prefetch=20, gridbus_batch_size=10)
        for i in range(2)
    ]
    inbox = inbox_reader(broker_url)
    for w in workers:
        w.tmp_path.mkdir()
        w.start()
    try:
        mine = lambda: inbox.where(lambda m: body_json(m)["key"] == key)  # noqa: E731
        wait_for(lambda: len({m.properties["message_id"] for m in mine()}) == 1001, timeout=90, what="all delivered")
        for w in workers:
            assert w.terminate() == 0
    finally:
        for w in workers:
            w.close()
    logs = [w.logs() for w in workers]
    assert all(log.count('"outcome": "delivered"') > 50 for log in logs), "both workers should have taken a share"
    assert sum(log.count('"outcome": "delivered"') for log in logs) == 1001
    with psycopg.connect(pg_schema_url) as conn:
        delivered = conn.execute("SELECT count(*) FROM outcomes WHERE outcome = 'delivered'").fetchone()[0]
    assert delivered == 1001
    assert len(ids) == 1000


# -- business state, decisions, schedules, journal -------------------------------------------------

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def decide_put(store, message_id, kind, key, data, ref=None, read=()):
    state = store.state.view()
    for k in read:
        state.get(kind, k)
    decision = Decision(result={"by": message_id})
    decision.put(kind, key, data, ref=ref)
    return state, decision


def test_a_decision_commits_once_with_its_records_schedules_and_journal(store):
    state = store.state.view()
    assert state.get("company", "C1") is None
    decision = Decision(result={"answer": "accepted"})
    decision.put("company", "C1", {"name": "鹭江新能"}, ref="R1")
    decision.schedules.append(Schedule("gridbus.due", "C1", NOW + timedelta(days=2), {"k": "C1"}, ("C1",)))
    decision.change(["C1"], "registered")
    assert store.state.commit_decision("route", "m1", decision, state.read, NOW)
    assert store.state.decision("route", "m1") == {"answer": "accepted"}
    record = store.state.get_record("company", "C1")
    assert (record.data, record.ref, record.version) == ({"name": "鹭江新能"}, "R1", 1)
    # the same message decided again (a competing worker) is refused and changes nothing
    again = store.state.view()
    again.get("company", "C1")
    assert not store.state.commit_decision("route", "m1", Decision(result={"answer": "other"}), again.read, NOW)
    assert store.state.decision("route", "m1") == {"answer": "accepted"} and store.state.get_record("company", "C1").version == 1
    assert [(e, d) for _, e, _, _, d in store.journal.trace("C1")] == [("state", "registered"), ("scheduled", "gridbus.due due " + (NOW + timedelta(days=2)).isoformat())]


def test_a_decision_on_state_changed_meanwhile_is_refused(store):
    first, decision_1 = decide_put(store, "m1", "binding", "U1", {"state": "a"}, read=["U1"])
    second, decision_2 = decide_put(store, "m2", "binding", "U1", {"state": "b"}, read=["U1"])
    assert store.state.commit_decision("r", "m2", decision_2, second.read, NOW)
    assert not store.state.commit_decision("r", "m1", decision_1, first.read, NOW)  # read as absent, created meanwhile
    assert store.state.decision("r", "m1") is None and store.state.get_record("binding", "U1").data == {"state": "b"}
    third, decision_3 = decide_put(store, "m3", "binding", "U1", {"state": "c"}, read=["U1"])
    fourth, decision_4 = decide_put(store, "m4", "binding", "U1", {"state": "d"}, read=["U1"])
    assert store.state.commit_decision("r", "m4", decision_4, fourth.read, NOW)
    assert not store.state.commit_decision("r", "m3", decision_3, third.read, NOW)  # read version 1, now 2
    # a record only read (not written) must be unchanged as well
    reader = store.state.view()
    reader.get("binding", "U1")
    other, decision_5 = decide_put(store, "m5", "binding", "U1", {"state": "e"}, read=["U1"])
    assert store.state.commit_decision("r", "m5", decision_5, other.read, NOW)
    assert not store.state.commit_decision("r", "m6", Decision(result={}), reader.read, NOW)
    assert store.state.get_record("binding", "U1").version == 3


def test_a_batch_of_keys_is_read_and_written_in_one_go_and_refused_whole_if_one_changed(store):
    """``get_many`` over ten thousand metering points, as a readings batch reads them: every
    record read at its version (absent ones at 0), all written in one commit; one of them written
    meanwhile by another decision refuses the whole commit, and nothing of it is written."""
    keys = [f"MP{n:08d}" for n in range(10_000)]
    seed = Decision()
    for key in keys[:6_000]:  # 6,000 known, 4,000 first readings
        seed.put("last-reading", key, {"total": "100.00"})
    assert store.state.commit_decision("r", "seed", seed, {}, NOW)

    def decide(message_id: str):
        state = store.state.view()
        found = state.get_many("last-reading", keys)
        decision = Decision(result={"n": len(found)})
        for key in keys:
            decision.put("last-reading", key, {"total": "101.00"})
        return state, decision, found

    first, decision_1, found = decide("m1")
    assert len(found) == 6_000 and found["MP00000007"].version == 1 and "MP00009999" not in found
    assert first.read[("last-reading", "MP00009999")] == 0
    meanwhile, decision_2, _ = decide("m2")
    rival = Decision()
    rival.put("last-reading", "MP00009999", {"total": "99.00"})  # a first reading of one key, committed meanwhile
    assert store.state.commit_decision("r", "rival", rival, {}, NOW)
    assert not store.state.commit_decision("r", "m1", decision_1, first.read, NOW)
    assert store.state.get_record("last-reading", "MP00000007").data == {"total": "100.00"}  # nothing of m1 written
    again, decision_3, _ = decide("m3")
    assert store.state.commit_decision("r", "m3", decision_3, again.read, NOW)
    assert {r.data["total"] for r in store.state.get_records("last-reading", keys).values()} == {"101.00"}
    assert store.state.get_record("last-reading", "MP00000007").version == 2


def test_a_record_only_read_in_a_batch_must_be_unchanged_at_commit(store):
    seed = Decision()
    seed.put("point", "MP1", {"multiplier": 80})
    assert store.state.commit_decision("r", "seed", seed, {}, NOW)
    reader = store.state.view()
    assert set(reader.get_many("point", ["MP1", "MP2"])) == {"MP1"}
    change = Decision()
    change.put("point", "MP1", {"multiplier": 120})
    assert store.state.commit_decision("r", "change", change, {}, NOW)
    assert not store.state.commit_decision("r", "m", Decision(result={}), reader.read, NOW)
    fresh = store.state.view()
    fresh.get_many("point", ["MP1", "MP2"])
    assert store.state.commit_decision("r", "m", Decision(result={}), fresh.read, NOW)


def test_records_are_found_by_ref_and_key_prefix(store):
    state = store.state.view()
    decision = Decision()
    for key, ref in (("U1|2026-12-01", "C1"), ("U1|2027-12-01", "C2"), ("U10|2026-12-01", "C1"), ("U2|2026-12-01", "C1")):
        decision.put("binding", key, {"key": key}, ref=ref)
    assert store.state.commit_decision("r", "m", decision, state.read, NOW)
    assert [r.key for r in store.state.find_records("binding", key_prefix="U1|")] == ["U1|2026-12-01", "U1|2027-12-01"]
    assert [r.key for r in store.state.find_records("binding", ref="C1")] == ["U10|2026-12-01", "U1|2026-12-01", "U2|2026-12-01"]
    assert store.state.find_records("company", ref="C1") == []


def test_schedules_fall_due_by_the_clock_fire_once_and_can_be_cancelled(store):
    decision = Decision()
    decision.schedules.append(Schedule("gridbus.due", "A", NOW + timedelta(days=25), {"n": 1}, ("U1",)))
    decision.schedules.append(Schedule("gridbus.due", "B", NOW + timedelta(days=30), {"n": 2}, ("U2",)))
    decision.schedules.append(Schedule("gridbus.other", "C", NOW, {"n": 3}))
    assert store.state.commit_decision("r", "m1", decision, {}, NOW)
    assert store.schedules.due(["gridbus.due"], NOW + timedelta(days=24)) == []
    [due] = store.schedules.due(["gridbus.due"], NOW + timedelta(days=26))
    assert (due.key, due.payload, due.trace_keys) == ("A", {"n": 1}, ("U1",))
    store.schedules.mark_fired(due, NOW + timedelta(days=26))
    store.schedules.mark_fired(due, NOW + timedelta(days=26))  # a second confirm changes nothing
    assert store.schedules.due(["gridbus.due"], NOW + timedelta(days=26)) == []
    assert [e for _, e, *_ in store.journal.trace("U1")] == ["scheduled", "fired"]
    cancel = Decision()
    cancel.cancels.append(Cancel("gridbus.due", "B"))
    assert store.state.commit_decision("r", "m2", cancel, {}, NOW)
    assert store.schedules.due(["gridbus.due"], NOW + timedelta(days=40)) == []
    assert [s.route for s in store.schedules.pending()] == ["gridbus.other"]
    # the schedule id names the decision that set it: set again by another one, it is a new message
    first_id = store.schedules.pending()[0].message_id
    again = Decision()
    again.schedules.append(Schedule("gridbus.other", "C", NOW, {"n": 4}))
    assert store.state.commit_decision("r", "m3", again, {}, NOW)
    assert store.schedules.pending()[0].message_id != first_id


def test_a_purge_with_a_limit_removes_at_most_that_many_rows_and_keeps_fresh_ones(store):
    old = time.time() - 2 * 86400
    expired = [("r", f"old{i}", "delivered", old) for i in range(250)]
    with store.db.transaction() as cur:
        cur.executemany(store.db.sql("INSERT INTO outcomes (route, message_id, outcome, at) VALUES ({p}, {p}, {p}, {p})"), expired)
        cur.executemany(store.db.sql("INSERT INTO effects (route, message_id, step, at) VALUES ({p}, {p}, {p}, {p})"),
                        [("r", f"old{i}", "mkt", old) for i in range(30)])
    store.idempotency.record(effects=[("r", "fresh", "mkt")], outcomes=[("r", "fresh", "delivered")])
    assert [store.idempotency.purge_older_than(86400, limit=100) for _ in range(4)] == [100, 100, 80, 0]
    assert store.idempotency.outcome("r", "fresh") == "delivered" and store.idempotency.steps_done("r", "fresh") == {"mkt"}
    assert store.idempotency.outcome("r", "old0") is None and store.idempotency.steps_done("r", "old0") == set()
