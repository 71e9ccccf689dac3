"""The dead-letter webhook with a worker on the real RabbitMQ: one notification for a burst of
one group, at most one more per interval, retried when the receiver fails, and never in the
way of message processing."""

from __future__ import annotations

import time
import uuid

import pytest

from gridbus.workers import alerts
from gridbus.workers.alerts import DeadLetterAlerts
from gridbus.workers.runtime import china_now
from tests.support.amqp import running_worker, wait_for
from tests.support.fakes import RecordingAdapter
from tests.support.routes import NOTES, ROUTES, note_body
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.broker


@pytest.fixture
def receiver():
    r = WebhookReceiver()
    yield r
    r.close()


def webhook(url: str, interval_s: float) -> DeadLetterAlerts:
    return DeadLetterAlerts(url, interval_s=interval_s, source="gridbus test@host pid 1", clock=china_now)


def refused_burst(pms, n: int) -> None:
    """``n`` notes that fail their contract: one group (test.notes, contract-violation, Note)."""
    for _ in range(n):
        pms.publish("pms.out", "note.published", b"not json", message_type="Note")


def test_a_burst_of_fifty_dead_letters_of_one_group_is_one_notification(broker_url, store, pms, receiver):
    hook = webhook(receiver.url, interval_s=600)
    try:
        with running_worker(ROUTES, broker_url, store, {"rec": RecordingAdapter()}, alerts=hook,
                            batch_size=10) as worker:
            refused_burst(pms, 50)
            wait_for(lambda: worker.counts.get("dead-lettered") == 50, what="50 dead letters")
            wait_for(lambda: receiver.received(), what="a notification")
            time.sleep(1.0)  # anything more would have come by now
    finally:
        hook.close()
    [note] = receiver.received()
    assert (note["route"], note["error_type"], note["message_type"]) == (NOTES.name, "contract-violation", "Note")
    assert note["new_group"] is True and 1 <= note["count"] <= 50 and note["event"] == "gridbus.dead-letters"
    assert "not a Note" in note["reason"] and "\n" not in note["reason"]
    assert note["first_seen"] <= note["last_seen"]


def test_dead_letters_after_the_first_notification_come_together_once_the_interval_is_over(
    broker_url, store, pms, receiver
):
    hook = webhook(receiver.url, interval_s=1.0)
    try:
        with running_worker(ROUTES, broker_url, store, {"rec": RecordingAdapter()}, alerts=hook,
                            batch_size=10) as worker:
            refused_burst(pms, 50)
            wait_for(lambda: worker.counts.get("dead-lettered") == 50, what="50 dead letters")
            wait_for(lambda: sum(n["count"] for n in receiver.received()) == 50, timeout=10, what="all 50 notified")
            time.sleep(1.5)
    finally:
        hook.close()
    notes = receiver.received()
    assert len(notes) == 2, [n["count"] for n in notes]  # the first at once, the rest after one interval
    assert [n["new_group"] for n in notes] == [True, False]
    assert notes[-1]["total"] == 50


def test_a_failed_post_is_tried_again(broker_url, store, pms, monkeypatch):
    monkeypatch.setattr(alerts, "POST_FIRST_BACKOFF_S", 0.05)
    failing = WebhookReceiver(failures=2)
    hook = webhook(failing.url, interval_s=600)
    try:
        with running_worker(ROUTES, broker_url, store, {"rec": RecordingAdapter()}, alerts=hook) as worker:
            refused_burst(pms, 1)
            wait_for(lambda: worker.counts.get("dead-lettered") == 1, what="a dead letter")
            wait_for(lambda: hook.sent == 1, timeout=10, what="the notification through, third time")
    finally:
        hook.close()
        failing.close()
    tries = failing.received()
    assert len(tries) == 3 and tries[0] == tries[2]


def test_a_receiver_that_hangs_does_not_hold_message_processing(broker_url, store, pms, monkeypatch):
    monkeypatch.setattr(alerts, "POST_TIMEOUT_S", 8.0)
    hanging = WebhookReceiver(delay_s=8.0)
    hook = webhook(hanging.url, interval_s=600)
    key = uuid.uuid4().hex
    try:
        with running_worker(ROUTES, broker_url, store, {"rec": RecordingAdapter()}, alerts=hook) as worker:
            refused_burst(pms, 1)
            wait_for(lambda: hanging.received(), what="the notification on its way")
            started = time.monotonic()
            for i in range(20):
                pms.publish("pms.out", "note.published", note_body(key, f"n {i}"), message_type="Note")
            refused_burst(pms, 5)
            wait_for(lambda: worker.counts.get("delivered") == 20 and worker.counts.get("dead-lettered") == 6,
                     timeout=6, what="every message settled while the receiver hangs")
            assert time.monotonic() - started < 6
            assert hook.sent == 0  # still waiting for its answer
    finally:
        hook.close(timeout_s=0.1)
        hanging.close()
