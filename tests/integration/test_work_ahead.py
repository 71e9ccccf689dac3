"""While a batch's confirms are on their way, the worker reads and decodes the next deliveries.

The broker's round trip for a batch's confirms is time the worker would otherwise spend
waiting; ``Intake.work_ahead`` fills it with the reading and decoding of what came since.
Nothing that touches the store or the targets runs ahead, so none of the guarantees move.
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from tests.support.amqp import UpstreamSystem, body_json, declare_routes, inbox_reader, running_worker, wait_for
from tests.support.routes import AMQP_ONLY_NOTES, Note, note_body
from gridbus.workers.amqp import BufferedTCPTransport, Publisher
from gridbus.workers.intake import Intake

pytestmark = pytest.mark.broker


@pytest.fixture
def backlog(broker_url, vhost, system_users):
    """``publish(n) -> (key, message ids)``: n notes waiting in the route's work queue."""
    declare_routes(broker_url, [AMQP_ONLY_NOTES])
    pms = UpstreamSystem(vhost, *system_users["pms"])

    def publish(n: int):
        key = uuid.uuid4().hex
        return key, [pms.publish("pms.out", "note.amqp", note_body(key, f"n{i}"), message_type="Note") for i in range(n)]

    yield publish
    pms.close()


def outbound_ids(inbox, key) -> Counter:
    return Counter(m.properties["correlation_id"] for m in inbox.where(lambda m: body_json(m)["key"] == key))


def test_deliveries_arriving_during_the_confirm_wait_are_decoded_there(broker_url, store, backlog, monkeypatch):
    taken_ahead: list = []
    original = Publisher.wait

    def spy(self, timeout=None, meanwhile=None):
        """The publisher's confirm wait, watching what its ``meanwhile`` (the intake's work-ahead) takes."""
        if meanwhile is None:
            return original(self, timeout, meanwhile)
        intake = meanwhile.__self__
        assert isinstance(intake, Intake)

        def watched():
            before, outstanding = len(intake.buffer), self._unsettled > 0
            meanwhile()
            taken_ahead.extend((d, outstanding) for d in intake.buffer[before:])

        return original(self, timeout, watched)

    monkeypatch.setattr(Publisher, "wait", spy)
    key, ids = backlog(600)
    inbox = inbox_reader(broker_url)
    with running_worker([AMQP_ONLY_NOTES], broker_url, store) as worker:
        wait_for(lambda: sum(outbound_ids(inbox, key).values()) == 600, what="600 notes in the inbox")
        wait_for(lambda: worker.counts.get("delivered") == 600, what="600 outcomes")
    assert len(taken_ahead) >= 100, "a 600-message backlog should give the confirm waits deliveries to take"
    assert all(outstanding for _, outstanding in taken_ahead), "taken only while confirms were outstanding"
    assert all(isinstance(d.decoded.message, Note) for d, _ in taken_ahead)
    assert {d.message_id for d, _ in taken_ahead} <= set(ids)
    assert outbound_ids(inbox, key) == Counter({i: 1 for i in ids})


def test_a_consumer_connection_failure_met_ahead_surfaces_after_the_batch_in_hand_is_settled(
    broker_url, store, backlog, monkeypatch
):
    """Raised at once, the failure would leave the batch in hand published but not recorded,
    and its redelivery would publish it again; raised after, the redelivery finds it done."""
    failures: list = []
    original = BufferedTCPTransport.receive_ready

    def fail_once(self):
        if not failures:
            failures.append(ConnectionResetError("connection reset while working ahead"))
            raise failures[0]
        return original(self)

    monkeypatch.setattr(BufferedTCPTransport, "receive_ready", fail_once)
    key, ids = backlog(400)
    inbox = inbox_reader(broker_url)
    with running_worker([AMQP_ONLY_NOTES], broker_url, store) as worker:
        wait_for(lambda: len(outbound_ids(inbox, key)) == 400, what="400 notes in the inbox")
        wait_for(lambda: sum(worker.counts.get(o, 0) for o in ("delivered", "duplicate")) >= 400, what="400 outcomes")
    assert failures, "the failure was never injected"
    assert outbound_ids(inbox, key) == Counter({i: 1 for i in ids})  # nothing published twice
    assert worker.counts.get("delivered") == 400
