"""What every part of ``gridbus demo`` uses: the example messages, publishing as an upstream
system would, waiting for the worker to settle, and collecting what arrived where."""

from __future__ import annotations

import time
import uuid

from kombu import Connection, Producer, Queue

from gridbus import contracts
from gridbus.contracts import naming
from gridbus.routes.model import RetryPolicy
from gridbus.workers import topology

EXAMPLES = contracts.EXAMPLES_DIR
#: The demo shortens the command center's back-off so a broker-held retry is seen in seconds.
DEMO_RETRY = RetryPolicy(attempts=5, first_delay_s=1.0, max_delay_s=4.0)


def example_body(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def publish_as_source(
    broker_url: str, passwords: dict[str, str], route, body: bytes, message_id: str, usernames: dict[str, str]
) -> None:
    """Publish ``body`` as the route's source system would: its own user, ``user_id`` set, persistent.

    ``usernames`` maps a system to its RabbitMQ user (``Settings.source_user_names``). Without the
    system's password it is published as the URL's user, with that ``user_id`` (the broker
    refuses a ``user_id`` other than the connection's): the route then dead-letters it as not
    published by its source system.
    """
    user = usernames.get(route.source.system, route.source.system)
    password = passwords.get(route.source.system)
    with Connection(as_user(broker_url, user, password)) as conn:
        user_id = user if password is not None or broker_url.startswith("memory://") else conn.userid
        Producer(conn.channel()).publish(
            body,
            exchange=route.source.exchange,
            routing_key=route.source.routing_key,
            serializer=None,
            content_type="application/json" if body.lstrip().startswith(b"{") else "application/xml",
            content_encoding="binary",
            message_id=message_id,
            correlation_id=f"demo-{route.name}",
            type=route.contract.message_type,
            user_id=user_id,
            delivery_mode=2,
        )


def wait_settled(worker, count: int, echo, timeout_s: float) -> bool:
    """Wait until ``count`` messages reached an outcome (a scheduled retry is no outcome yet)."""
    deadline = time.monotonic() + timeout_s
    while sum(worker.counts.values()) - worker.counts.get("retry-scheduled", 0) < count:
        if time.monotonic() > deadline:
            echo(f"the demo did not settle within {timeout_s:g} s", err=True)
            return False
        time.sleep(0.05)
    return True


def collect(broker_url: str, routes, events_tap: str) -> tuple[list, list, list]:
    """What reached marketing's inbox, the events tap and the routes' dead-letter queues; the tap goes."""
    with Connection(broker_url) as conn:
        inbox = take_all(conn, naming.system_inbox_queue("mkt"))
        events = take_all(conn, events_tap)
        dead = [m for r in routes for m in take_all(conn, r.dead_letter_queue)]
        Queue(events_tap, no_declare=True)(conn.channel()).delete()
    return inbox, events, dead


def as_user(broker_url: str, user: str, password: str | None) -> str:
    if broker_url.startswith("memory://") or password is None:
        return broker_url
    scheme, rest = broker_url.split("://", 1)
    host = rest.split("@", 1)[-1]
    return f"{scheme}://{user}:{password}@{host}"


def take_all(conn: Connection, queue: str) -> list:
    q = Queue(queue, no_declare=True)(conn.channel())
    taken = []
    while (message := q.get(no_ack=True)) is not None:
        taken.append(message)
    return taken


def declare_with_events_tap(broker_url: str, routes) -> str:
    """Declare the routes' topology and a queue that taps every canonical event; its name."""
    tap = f"gridbus.demo.events.{uuid.uuid4().hex[:6]}"
    with Connection(broker_url) as admin:
        channel = admin.channel()
        topology.declare(channel, topology.derive(routes))
        Queue(tap, exclusive=False, auto_delete=False)(channel).declare()
        channel.queue_bind(tap, naming.EVENTS_EXCHANGE, "#")
    return tap
