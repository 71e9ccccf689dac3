"""``workers.parts``: what the worker does per settled batch and per loop turn, without a broker."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from tests.support.routes import NOTES, note_body
from gridbus.contracts.errors import ContractViolation
from gridbus.workers.parts import OutcomeLog, RetentionPurge, TraceJournal
from gridbus.workers.pipeline import Delivery

NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))


class _Message:
    def __init__(self):
        self.body = note_body("k", "t")
        self.properties = {"message_id": str(uuid.uuid4()), "type": "Note", "user_id": "pms"}
        self.headers = {}
        self.delivery_info = {"exchange": "pms.out", "routing_key": "note.published", "redelivered": False}


def settled(outcome: str, keys: tuple[str, ...] = (), error=None) -> Delivery:
    d = Delivery(route=NOTES, message=_Message())
    d.outcome, d.trace_keys, d.error = outcome, keys, error
    return d


class _Journal:
    """The journal's ``append``, recording each call."""

    def __init__(self):
        self.appended: list[list] = []

    def append(self, rows) -> None:
        self.appended.append(list(rows))


class _Idempotency:
    """The idempotency family's purge, removing ``purge_chunks`` rows call after call."""

    def __init__(self, purge_chunks: list[int]):
        self.purges: list[tuple[float, int]] = []
        self._chunks = purge_chunks

    def purge_older_than(self, seconds: float, limit: int | None = None) -> int:
        self.purges.append((seconds, limit))
        return self._chunks.pop(0) if self._chunks else 0


def test_the_outcome_log_counts_a_whole_batch():
    log = OutcomeLog()
    log.after_settle([settled("delivered"), settled("duplicate"), settled("delivered")])
    log.after_settle([settled("dead-lettered", error=ContractViolation("bad"))])
    assert log.counts == {"delivered": 2, "duplicate": 1, "dead-lettered": 1}


def test_the_journal_writes_one_commit_per_batch_for_the_traced_messages_only():
    store = _Journal()
    journal = TraceJournal(store, lambda: NOW)
    sent = settled("delivered", ("HV1",))
    sent.delivered, sent.outputs = ["rec"], {"rec": ("amqp mkt.in", "out-1")}
    refused = settled("dead-lettered", ("HV2", "ORG9"), error=ContractViolation("field PlanNo missing"))
    journal.after_settle([sent, settled("delivered"), refused])
    journal.after_settle([settled("delivered")])  # nothing traced: no write at all
    [rows] = store.appended
    at = NOW.timestamp()
    assert rows == [
        (at, "HV1", "delivered", NOTES.name, sent.message_id, "Note from pms"),
        (at, "HV1", "sent", NOTES.name, sent.message_id, "rec -> amqp mkt.in (message out-1)"),
        (at, "HV2", "dead-lettered", NOTES.name, refused.message_id, "contract-violation: field PlanNo missing"),
        (at, "ORG9", "dead-lettered", NOTES.name, refused.message_id, "contract-violation: field PlanNo missing"),
    ]


def test_the_retention_purge_takes_a_chunk_per_turn_until_nothing_older_is_left(monkeypatch):
    store = _Idempotency(purge_chunks=[500, 500, 120])
    purge = RetentionPurge(store, retention_s=86400, interval_s=3600, chunk_rows=500)
    monkeypatch.setattr(RetentionPurge, "PAUSE_S", 0.0)
    for _ in range(5):
        purge.on_turn()
    assert store.purges == [(86400, 500)] * 3  # the third chunk was short: done until the next interval
