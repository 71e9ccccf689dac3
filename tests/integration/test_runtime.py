"""The runtime against the real RabbitMQ: delivery, idempotency, supersession, retry, dead letters."""

from __future__ import annotations

import json
import uuid

import pytest

from gridbus.contracts import naming
from tests.conftest import TEST_SOURCE_USERS
from tests.support.amqp import (
    QueueReader,
    UpstreamSystem,
    body_json,
    dead_letter_reader,
    inbox_reader,
    running_worker,
    wait_for,
)
from tests.support.fakes import RecordingAdapter
from tests.support.routes import NOTES, REVISED_NOTES, ROUTES, note_body
from gridbus.workers import headers as H

pytestmark = pytest.mark.broker


@pytest.fixture
def rec():
    return RecordingAdapter()


@pytest.fixture
def pms(vhost, system_users):
    system = UpstreamSystem(vhost, *system_users["pms"])
    yield system
    system.close()


@pytest.fixture
def mkt(vhost, system_users):
    system = UpstreamSystem(vhost, *system_users["mkt"])
    yield system
    system.close()


@pytest.fixture
def guest(vhost):
    system = UpstreamSystem(vhost, "guest", "guest")
    yield system
    system.close()


def publish_note(system, key, text="hello", **kwargs):
    return system.publish("pms.out", "note.published", note_body(key, text), message_type="Note", **kwargs)


def dead_letters_for(broker_url, route, message_id):
    return dead_letter_reader(broker_url, route).where(lambda m: m.properties.get("message_id") == message_id)


def test_messages_are_delivered_to_every_step_once(broker_url, store, rec, pms):
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
        ids = [publish_note(pms, key, f"note {i}") for i in range(5)]
        wait_for(lambda: len(rec.calls) == 5, what="5 deliveries to rec")
        got = wait_for(lambda: len(inbox.where(lambda m: body_json(m)["key"] == key)) == 5 or None, what="inbox")
        assert got
        assert worker.counts.get("delivered") == 5
    texts = sorted(out.text for _, _, out in rec.calls)
    assert texts == [f"note {i}" for i in range(5)]
    outbound = inbox.where(lambda m: body_json(m)["key"] == key)
    # Outbound ids are derived, stable, and distinct from the inbound ones; correlation is kept.
    assert {m.properties["correlation_id"] for m in outbound} == set(ids)
    assert not {m.properties["message_id"] for m in outbound} & set(ids)


def test_the_same_message_three_times_has_one_effect(broker_url, store, rec, pms):
    key = uuid.uuid4().hex
    message_id = str(uuid.uuid4())
    inbox = inbox_reader(broker_url)
    with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
        for _ in range(3):
            publish_note(pms, key, message_id=message_id)
        wait_for(lambda: worker.counts.get("delivered", 0) + worker.counts.get("duplicate", 0) == 3, what="3 outcomes")
        # And once more after the first was recorded, in a batch of its own.
        publish_note(pms, key, message_id=message_id)
        wait_for(lambda: worker.counts.get("duplicate", 0) == 3, what="the 4th copy seen as duplicate")
    assert len(rec.calls) == 1
    assert len(inbox.where(lambda m: body_json(m)["key"] == key)) == 1


def test_older_revision_arriving_late_is_not_delivered(broker_url, store, rec, mkt):
    key = uuid.uuid4().hex
    with running_worker(ROUTES, broker_url, store, {"rec": rec}, batch_size=1) as worker:
        for revision in (1, 3, 2):
            mkt.publish("mkt.out", "note.revised", note_body(key, f"rev {revision}", revision), message_type="Note")
            wait_for(lambda: sum(worker.counts.values()) >= revision if revision < 3 else sum(worker.counts.values()) >= 2,
                     what=f"revision {revision} processed")
        wait_for(lambda: sum(worker.counts.values()) == 3, what="three outcomes")
        assert worker.counts == {"delivered": 2, "superseded": 1}
    assert [out.revision for _, _, out in rec.calls] == [1, 3]
    assert store.idempotency.latest_revision(REVISED_NOTES.name, key) == 3


def test_transient_failures_are_retried_until_delivered_once(broker_url, store, rec, pms):
    key = uuid.uuid4().hex
    rec.fail_next(2)  # one try per attempt, no waiting in the worker: attempts 1-2 fail, attempt 3 succeeds
    with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
        message_id = publish_note(pms, key)
        wait_for(lambda: worker.counts.get("delivered") == 1, timeout=20, what="delivery after retries")
        assert worker.counts.get("retry-scheduled") == 2
    assert [mid for _, mid, _ in rec.calls] and len(rec.calls) == 1
    assert dead_letters_for(broker_url, NOTES, message_id) == []


def test_retries_exhausted_ends_in_the_dead_letter_queue_with_history(broker_url, store, rec, pms):
    key = uuid.uuid4().hex
    rec.fail_next(1000)
    with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
        message_id = publish_note(pms, key, correlation_id="corr-1")
        wait_for(lambda: worker.counts.get("dead-lettered") == 1, timeout=30, what="dead letter")
    [dead] = dead_letters_for(broker_url, NOTES, message_id)
    h = dead.headers
    assert h[H.ERROR_TYPE] == "retries-exhausted"
    assert "injected outage" in h[H.ERROR_MESSAGE]
    assert h[H.ATTEMPT] == NOTES.retry.attempts
    assert h[H.ROUTE] == NOTES.name
    assert h[H.ORIGINAL_EXCHANGE] == "pms.out" and h[H.ORIGINAL_ROUTING_KEY] == "note.published"
    assert h[H.FIRST_FAILURE_AT] <= h[H.LAST_FAILURE_AT]
    assert h[H.SOURCE_USER] == pms.user
    assert H.X_DEATH not in h
    assert dead.body == note_body(key, "hello")
    assert dead.properties["correlation_id"] == "corr-1"


def test_permanent_refusal_is_dead_lettered_at_once(broker_url, store, rec, pms):
    rec.fail_next(1, "permanent")
    with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
        message_id = publish_note(pms, uuid.uuid4().hex)
        wait_for(lambda: worker.counts.get("dead-lettered") == 1, what="dead letter")
    [dead] = dead_letters_for(broker_url, NOTES, message_id)
    assert dead.headers[H.ERROR_TYPE] == "delivery-refused"
    assert dead.headers[H.ATTEMPT] == 1


BAD_INPUTS = {
    "wrong-version": dict(body=note_body("k", version="2"), error_type="contract-violation", says="version '2'"),
    "not-json": dict(body=b"{not json", error_type="contract-violation", says="not a Note"),
    "missing-field": dict(body=json.dumps({"schema_version": "1", "key": "k"}).encode(), error_type="contract-violation", says="text"),
    "oversized": dict(body=note_body("k", "x" * (1024 * 1024)), error_type="contract-violation", says="exceeds the limit"),
    "unknown-type": dict(body=note_body("k"), message_type="Memo", error_type="unknown-message-type", says="'Memo'"),
    "no-message-id": dict(body=note_body("k"), message_id="", error_type="missing-message-id", says="message_id"),
    "no-user-id": dict(body=note_body("k"), user_id=None, error_type="unauthorised", says="no user_id"),
    "mapping-bug": dict(body=note_body("k", "unmappable"), error_type="mapping-error", says="no mapping for text"),
}


def test_bad_input_is_dead_lettered_with_a_reason_while_good_input_flows(broker_url, store, rec, pms):
    key = uuid.uuid4().hex
    published = {}
    with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
        for name, case in BAD_INPUTS.items():
            headers = {"x-test-case": name}
            published[name] = pms.publish(
                "pms.out", "note.published", case["body"], message_type=case.get("message_type", "Note"),
                message_id=case.get("message_id"), user_id=case.get("user_id", "self"), headers=headers,
            )
            publish_note(pms, key, f"good after {name}")
        wait_for(lambda: worker.counts.get("dead-lettered") == len(BAD_INPUTS), what="all bad inputs dead-lettered")
        wait_for(lambda: worker.counts.get("delivered") == len(BAD_INPUTS), what="all good inputs delivered")
    dead = {m.headers.get("x-test-case"): m for m in dead_letter_reader(broker_url, NOTES).drain()}
    for name, case in BAD_INPUTS.items():
        letter = dead[name]
        assert letter.headers[H.ERROR_TYPE] == case["error_type"], name
        assert case["says"] in letter.headers[H.ERROR_MESSAGE], (name, letter.headers[H.ERROR_MESSAGE])
        assert letter.body == case["body"], name
    assert sorted(out.text for _, _, out in rec.calls) == sorted(f"good after {n}" for n in BAD_INPUTS)


def test_a_message_from_another_system_is_unauthorised(broker_url, store, rec, guest):
    with running_worker(ROUTES, broker_url, store, {"rec": rec}) as worker:
        message_id = publish_note(guest, uuid.uuid4().hex)
        wait_for(lambda: worker.counts.get("dead-lettered") == 1, what="dead letter")
    [dead] = dead_letters_for(broker_url, NOTES, message_id)
    assert dead.headers[H.ERROR_TYPE] == "unauthorised"
    assert "published by 'guest'" in dead.headers[H.ERROR_MESSAGE]
    assert f"accepts only system 'pms' as user {TEST_SOURCE_USERS['pms']!r}" in dead.headers[H.ERROR_MESSAGE]
    assert rec.calls == []


def test_the_broker_refuses_a_forged_user_id(vhost, system_users):
    import pika

    system = UpstreamSystem(vhost, *system_users["mkt"])
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            system.publish("mkt.out", "note.revised", note_body("k"), message_type="Note", user_id=system_users["pms"][0])
        assert refused.value.reply_code == 406
    finally:
        system.connection.close() if system.connection.is_open else None


def test_a_routing_key_no_route_knows_lands_in_the_unrouted_queue(broker_url, store, rec, pms):
    with running_worker(ROUTES, broker_url, store, {"rec": rec}):
        message_id = pms.publish("pms.out", "no.such.flow", b"<x/>", message_type="Mystery")
    unrouted = QueueReader(broker_url, naming.UNROUTED_QUEUE)
    assert wait_for(lambda: unrouted.where(lambda m: m.properties.get("message_id") == message_id), what="unrouted")
