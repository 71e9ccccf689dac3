"""On ``memory://`` the worker does what RabbitMQ does with a retry copy in a delay queue: once
its due time has come, the copy goes back through the retry exchange, and not before."""

from __future__ import annotations

import time

from kombu import Connection, Exchange, Producer, Queue

from gridbus.contracts import naming
from gridbus.workers import headers as H
from gridbus.workers.amqp import DelayEmulation
from tests.support.routes import NOTES


class RecordingPublisher:
    """What ``DelayEmulation`` uses of the worker's publisher: ``publish``, then ``wait``."""

    def __init__(self):
        self.published: list[dict] = []
        self.waits = 0

    def publish(self, **publish) -> int:
        self.published.append(publish)
        return len(self.published)

    def wait(self) -> dict:
        self.waits += 1
        return {}


def test_due_copies_go_back_through_the_retry_exchange_and_later_ones_wait():
    delay = NOTES.retry.delay_tiers[0]
    with Connection("memory://") as conn:
        channel = conn.channel()
        queue = Queue(NOTES.delay_queue(delay), exchange=Exchange("", type="direct"), routing_key=NOTES.delay_queue(delay))
        queue(channel).declare()
        producer = Producer(channel)
        now = time.time()
        for key, due in (("later", now + 0.3), ("due", now - 1)):
            producer.publish(key.encode(), routing_key=NOTES.delay_queue(delay), message_id=key, serializer=None,
                             content_type="application/json", content_encoding="utf-8",
                             headers={H.DUE_AT: due, H.ATTEMPT: 2})
        publisher = RecordingPublisher()
        delays = DelayEmulation([NOTES], lambda: publisher)

        delays.move_due(channel)
        assert [p["body"] for p in publisher.published] == [b"due"]
        (first,) = publisher.published
        assert (first["exchange"], first["routing_key"]) == (naming.RETRY_EXCHANGE, NOTES.name)
        assert first["properties"]["message_id"] == "due" and "application_headers" not in first["properties"]
        assert first["headers"][H.ATTEMPT] == 2
        assert publisher.waits == 1  # confirmed before the next copy moves

        time.sleep(0.35)
        delays.move_due(channel)  # the queue is empty now: the later copy was kept by the emulation
        assert [p["body"] for p in publisher.published] == [b"due", b"later"]
