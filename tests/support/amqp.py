"""Test helpers that talk to the real broker: a pika publisher acting as an upstream system,
an inbox reader, a dead-letter reader, and a worker running in a thread."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import pika
from kombu import Connection, Queue

from gridbus.adapters.amqp import build_amqp_adapters
from gridbus.contracts import naming
from gridbus.workers.runtime import Worker
from gridbus.workers.settings import Settings
from gridbus.workers.store import Store


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class UpstreamSystem:
    """Publishes as an upstream system would: pika, confirms, mandatory, user_id set."""

    def __init__(self, vhost: str, user: str, password: str, host: str = "127.0.0.1", port: int = 5672):
        params = pika.ConnectionParameters(
            host=host, port=port, virtual_host=vhost, credentials=pika.PlainCredentials(user, password)
        )
        self.user = user
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()

    def publish(self, exchange, routing_key, body: bytes, *, message_id=None, message_type=None,
                user_id="self", correlation_id=None, content_type="application/json", headers=None,
                content_encoding=None) -> str:
        message_id = str(uuid.uuid4()) if message_id is None else message_id
        props = pika.BasicProperties(
            message_id=message_id or None,
            correlation_id=correlation_id,
            type=message_type,
            content_type=content_type,
            content_encoding=content_encoding,
            delivery_mode=2,
            user_id=self.user if user_id == "self" else user_id,
            headers=headers,
        )
        self.channel.basic_publish(exchange, routing_key, body, properties=props, mandatory=True)
        return message_id

    def close(self):
        if self.connection.is_open:
            try:
                self.connection.close()
            except pika.exceptions.AMQPError:
                pass  # the broker dropped it already (tests that drop connections)


_SHARED: dict[str, Connection] = {}


@contextmanager
def shared_channel(broker_url: str):
    """A channel on one long-lived connection per broker URL.

    Tests poll queues many times a second; opening a connection for each poll would put the
    broker through thousands of handshakes a minute for nothing.
    """
    for attempt in (1, 2):
        conn = _SHARED.get(broker_url)
        try:
            if conn is None:
                conn = Connection(broker_url, connect_timeout=10)
                conn.ensure_connection(max_retries=3)
                _SHARED[broker_url] = conn
            channel = conn.channel()
        except Exception:  # noqa: BLE001 - a dropped connection: open a new one once
            _SHARED.pop(broker_url, None)
            if attempt == 2:
                raise
            continue
        try:
            yield channel
        finally:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 - the channel may have been closed by a broker error
                _SHARED.pop(broker_url, None)
        return


class QueueReader:
    """Takes every message off a queue and keeps it (acked), for assertions."""

    def __init__(self, broker_url: str, queue: str):
        self.broker_url = broker_url
        self.queue = queue
        self.messages: list = []

    def drain(self) -> list:
        with shared_channel(self.broker_url) as channel:
            q = Queue(self.queue, no_declare=True)(channel)
            while (m := q.get(no_ack=False)) is not None:
                m.ack()
                self.messages.append(m)
        return self.messages

    def where(self, predicate) -> list:
        self.drain()
        return [m for m in self.messages if predicate(m)]


def body_json(message) -> dict:
    import json

    return json.loads(message.body)


@contextmanager
def running_worker(routes, broker_url: str, store: Store, extra_adapters=None, **kwargs):
    """A worker in a thread; its routes accept the suite's own system users (``TEST_SOURCE_USERS``)."""
    from tests.conftest import TEST_SOURCE_USERS

    kwargs.setdefault("source_users", TEST_SOURCE_USERS)
    # GRIDBUS_AMQP_FAST_PATH=false runs the suite on py-amqp's public API alone (see .ci/run)
    kwargs.setdefault("amqp_fast_path", Settings().amqp_fast_path)
    worker = Worker(
        routes,
        broker_url=broker_url,
        store=store,
        adapters=lambda publisher: {**build_amqp_adapters(publisher), **(extra_adapters or {})},
        **kwargs,
    )
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    wait_for(lambda: worker._publisher is not None, what="worker connected")
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(15)
        assert not thread.is_alive(), "worker did not stop within 15 s"


def dead_letter_reader(broker_url: str, route) -> QueueReader:
    return QueueReader(broker_url, route.dead_letter_queue)


def inbox_reader(broker_url: str, system: str = "mkt") -> QueueReader:
    return QueueReader(broker_url, naming.system_inbox_queue(system))


def declare_routes(broker_url: str, routes) -> None:
    """Create the routes' topology, as ``gridbus topology declare`` does."""
    from gridbus.workers import topology

    with Connection(broker_url) as conn:
        topology.declare(conn.channel(), topology.derive(routes))


def queue_depth(broker_url: str, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered and unacked)."""
    with shared_channel(broker_url) as channel:
        return channel.queue_declare(queue=queue, passive=True).message_count
