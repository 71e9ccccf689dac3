"""``workers.metrics`` and ``workers.probes``' checks, without a broker: what a meter tallies per
batch, how it is exposed, and when a lane is taken as not ready."""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gridbus.contracts.errors import ContractViolation, RetriesExhausted
from gridbus.workers.metrics import DURATION_BOUNDS, ArchiveCollector, Buckets, Meter, registry_of
from gridbus.workers.pipeline import Delivery
from gridbus.workers.probes import Probes
from gridbus.workers.store import Store
from gridbus.workers.store.db import Database
from gridbus.workers.store.dead_letters import NewLetter, letter_id
from tests.support.routes import NOTES, REVISED_NOTES, note_body

class _Message:
    def __init__(self, message_type: str = "Note"):
        self.body = note_body("k", "t")
        self.properties = {"message_id": str(uuid.uuid4()), "type": message_type, "user_id": "pms"}
        self.headers = {}
        self.delivery_info = {"exchange": "pms.out", "routing_key": "note.published", "redelivered": False}


def settled(outcome: str, error=None, route=NOTES, message_type: str = "Note") -> Delivery:
    d = Delivery(route=route, message=_Message(message_type))
    d.outcome, d.error = outcome, error
    return d


def exposed(meter: Meter) -> dict:
    text = generate_latest(registry_of([meter])).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def test_a_bucket_holds_values_up_to_its_bound_and_cumulates():
    b = Buckets((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 3.0):
        b.add(v)
    assert b.family_samples() == ([("0.1", 2), ("1.0", 3), ("+Inf", 4)], 3.65)


def test_a_batch_is_counted_by_route_outcome_and_error_type():
    meter = Meter("amqp", [NOTES.name, REVISED_NOTES.name])
    meter.after_settle([
        settled("delivered"), settled("delivered"), settled("retry-scheduled"),
        settled("dead-lettered", ContractViolation("bad")), settled("dead-lettered", RetriesExhausted("gone")),
    ])
    meter.confirm_waited(0.002)
    meter.committed(0.0007)
    found = exposed(meter)

    def value(name, **labels):
        return found.get((name, frozenset(labels.items())))

    assert value("gridbus_messages_total", route=NOTES.name, outcome="delivered") == 2
    assert value("gridbus_messages_total", route=NOTES.name, outcome="dead-lettered") == 2
    # there from the start
    assert value("gridbus_messages_total", route=REVISED_NOTES.name, outcome="dead-lettered") == 0
    assert value("gridbus_retries_scheduled_total", route=NOTES.name) == 1
    assert value("gridbus_retries_scheduled_total", route=REVISED_NOTES.name) == 0
    assert value("gridbus_dead_letters_total", route=NOTES.name, error_type="contract-violation") == 1
    assert value("gridbus_dead_letters_total", route=NOTES.name, error_type="retries-exhausted") == 1
    assert value("messaging_process_duration_seconds_count", route=NOTES.name) == 5
    assert value("messaging_process_duration_seconds_bucket", route=NOTES.name, le=repr(DURATION_BOUNDS[-1])) == 5
    assert value("gridbus_batch_size_count", lane="amqp") == 1 and value("gridbus_batch_size_sum", lane="amqp") == 5
    assert value("gridbus_confirm_wait_seconds_sum", lane="amqp") == 0.002
    assert value("gridbus_store_commit_seconds_bucket", lane="amqp", le="0.001") == 1


def test_a_scrape_while_batches_are_tallied_is_consistent():
    meter = Meter("amqp", [NOTES.name])
    batch = [settled("delivered") for _ in range(100)]
    stop = threading.Event()

    def tally():
        while not stop.is_set():
            meter.after_settle(batch)

    thread = threading.Thread(target=tally)
    thread.start()
    try:
        for _ in range(20):
            found = exposed(meter)
            count = found[("messaging_process_duration_seconds_count", frozenset({("route", NOTES.name)}))]
            delivered = found[("gridbus_messages_total", frozenset({("route", NOTES.name), ("outcome", "delivered")}))]
            assert count % 100 == 0 and delivered % 100 == 0
    finally:
        stop.set()
        thread.join()


def test_schedules_due_are_a_gauge_by_internal_route():
    meter = Meter("tc", [NOTES.name])
    meter.due({"gridbus.ownership-due": 3})
    meter.due({"gridbus.ownership-due": 0})
    assert exposed(meter)[("gridbus_schedules_due", frozenset({("route", "gridbus.ownership-due")}))] == 0


# -- readiness -------------------------------------------------------------------------------


def lane(tmp_path, **changes):
    worker = SimpleNamespace(
        name="amqp", node="amqp://127.0.0.1", consuming=True, message_deadline_s=300.0, routes=(NOTES,), meter=None,
        settlement=SimpleNamespace(busy_since=None),
        store=SimpleNamespace(db=Database(f"sqlite:///{tmp_path}/store.sqlite3"), dead_letters=None),
    )
    for key, value in changes.items():
        setattr(worker, key, value)
    return worker


def test_a_lane_is_ready_when_connected_consuming_with_its_store_and_no_batch_past_its_deadline(tmp_path):
    assert Probes({"amqp": lane(tmp_path)}).readiness()["amqp"].ready


def test_a_lane_without_a_broker_or_consumers_is_not_ready(tmp_path):
    state = Probes({"amqp": lane(tmp_path, node=None, consuming=False)}).readiness()["amqp"]
    assert (state.broker, state.consuming, state.ready) == (False, False, False)


def test_a_batch_past_the_deadline_makes_the_lane_not_ready(tmp_path):
    stuck = lane(tmp_path, message_deadline_s=5.0, settlement=SimpleNamespace(busy_since=time.monotonic() - 6))
    state = Probes({"amqp": stuck}).readiness()["amqp"]
    assert (state.batch, state.ready) == (False, False)


def test_a_store_that_does_not_answer_makes_the_lane_not_ready(tmp_path):
    worker = lane(tmp_path)
    worker.store.db.close()
    state = Probes({"amqp": worker}).readiness()["amqp"]
    assert (state.store, state.ready) == (False, False)


def test_a_store_in_use_is_not_waited_for(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/store.sqlite3")
    with db.transaction():  # held by this thread: another one cannot have it
        answered: list = []
        thread = threading.Thread(target=lambda: answered.append(db.ping(0.05)))
        thread.start()
        thread.join()
    assert answered == [None]
    assert db.ping(0.05) is True


# -- the dead-letter archive -------------------------------------------------------------------


def archived(route: str, n: int, at: float, error_type: str = "contract-violation") -> NewLetter:
    properties, headers, body = {"message_id": f"m{n}", "type": "Note"}, {"x-gridbus-route": route}, f"b{n}".encode()
    queue = f"gridbus.{route}.dlq"
    return NewLetter(
        letter_id=letter_id(queue, properties, headers, body), route=route, queue=queue,
        message_id=f"m{n}", message_type="Note", error_type=error_type, reason="not a Note",
        first_failure_at=at, last_failure_at=at, dead_lettered_at=at, attempts=1, business_keys=(),
        properties=properties, headers=headers, body=body,
    )


def test_the_archive_gauges_count_unhandled_letters_and_their_oldest_by_route(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    try:
        store.dead_letters.ingest([
            archived(NOTES.name, 1, 1_000.0), archived(NOTES.name, 2, 2_000.0, "retries-exhausted"),
            archived(NOTES.name, 3, 3_000.0), archived(REVISED_NOTES.name, 4, 4_000.0),
        ], at=5_000.0)
        collector = ArchiveCollector(store.dead_letters, cache_s=0)
        registry = registry_of([], dead_letters=store.dead_letters)
        found = {
            (s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples
        }
        assert found[("gridbus_archive_dead_letters", frozenset({("route", NOTES.name)}))] == 3
        assert found[("gridbus_archive_dead_letters", frozenset({("route", REVISED_NOTES.name)}))] == 1
        oldest = "gridbus_archive_oldest_unhandled_timestamp_seconds"
        assert found[(oldest, frozenset({("route", NOTES.name)}))] == 1_000.0
        assert found[(oldest, frozenset({("route", REVISED_NOTES.name)}))] == 4_000.0
        store.close()  # a store that fails: the last values read, and the scrape goes on
        assert [len(f.samples) for f in collector.collect()] == [0, 0]  # nothing read before
    finally:
        store.close()


def test_the_archive_is_read_at_most_once_per_cache_period(tmp_path):
    reads = []

    class _Archive:
        def groups(self):
            reads.append(1)
            return []

    collector = ArchiveCollector(_Archive(), cache_s=60)
    for _ in range(3):
        list(collector.collect())
    assert len(reads) == 1
