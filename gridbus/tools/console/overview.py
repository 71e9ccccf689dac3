"""What the overview page shows, read from the store and the broker; nothing here writes.

- processed: messages finished (delivered or superseded), from the ``outcomes`` table, every route;
- retried: distinct messages with a ``retry-scheduled`` line in the trace journal, which only
  holds messages whose business keys were read (a message refused by its contract has none), so
  this is a lower bound;
- dead-lettered: letters in the dead-letter archive by when they were dead-lettered (whatever
  became of them since), and the oldest unhandled one per route;
- depths: each route's work and dead-letter queue, by a passive declare on the broker (nothing
  is consumed; a queue that is missing or a broker that does not answer shows as unknown).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import amqp
import kombu.exceptions
from kombu import Connection

from gridbus.contracts import naming
from gridbus.workers.store.db import Database
from gridbus.workers.store.dead_letters import DeadLetters

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S


@dataclass
class RouteActivity:
    """One route's row of the overview: counts in the last hour and the last day, queue depths."""

    route: str
    processed_hour: int = 0
    processed_day: int = 0
    retried_hour: int = 0
    retried_day: int = 0
    dead_lettered_hour: int = 0
    dead_lettered_day: int = 0
    work_depth: int | None = None
    dead_letter_depth: int | None = None
    #: epoch seconds of the oldest dead letter not yet replayed or purged (from the archive)
    oldest_dead_letter_at: float | None = None

    @property
    def failed_hour(self) -> int:
        return self.retried_hour + self.dead_lettered_hour

    @property
    def failed_day(self) -> int:
        return self.retried_day + self.dead_lettered_day


@dataclass
class Series:
    """Counts per hour, oldest first, ending with the hour that holds ``now``."""

    name: str
    start: float
    counts: list[int] = field(default_factory=list)


def activity(db: Database, archive: DeadLetters, routes: Iterable[str], now: float) -> list[RouteActivity]:
    """Per route, the last hour's and day's processed, retried and dead-lettered messages."""
    rows = {name: RouteActivity(name) for name in routes}
    hour, day = now - HOUR_S, now - DAY_S
    for route, last_hour, last_day in db.query(
        "SELECT route, SUM(CASE WHEN at >= {p} THEN 1 ELSE 0 END), COUNT(*) FROM outcomes "
        "WHERE at >= {p} GROUP BY route",
        (hour, day),
    ):
        if route in rows:
            rows[route].processed_hour, rows[route].processed_day = int(last_hour), int(last_day)
    for route, last_hour, last_day in db.query(
        "SELECT route, COUNT(DISTINCT CASE WHEN at >= {p} THEN message_id END), COUNT(DISTINCT message_id) "
        "FROM journal WHERE at >= {p} AND event = 'retry-scheduled' GROUP BY route",
        (hour, day),
    ):
        if route in rows:
            rows[route].retried_hour, rows[route].retried_day = int(last_hour), int(last_day)
    for route, last_hour, last_day in db.query(
        "SELECT route, SUM(CASE WHEN dead_lettered_at >= {p} THEN 1 ELSE 0 END), COUNT(*) FROM dead_letters "
        "WHERE dead_lettered_at >= {p} GROUP BY route",
        (hour, day),
    ):
        if route in rows:
            rows[route].dead_lettered_hour, rows[route].dead_lettered_day = int(last_hour), int(last_day)
    for route, oldest in archive.oldest_unhandled().items():
        if route in rows:
            rows[route].oldest_dead_letter_at = oldest
    return list(rows.values())


def hourly_throughput(db: Database, now: float, hours: int = 24) -> Series:
    """Messages finished per hour over the last ``hours`` hours, every route together."""
    start = (now // HOUR_S - hours + 1) * HOUR_S
    counts = [0] * hours
    for bucket, count in db.query(
        "SELECT CAST(FLOOR((at - {p}) / 3600) AS INTEGER), COUNT(*) FROM outcomes WHERE at >= {p} GROUP BY 1",
        (start, start),
    ):
        if 0 <= int(bucket) < hours:
            counts[int(bucket)] += int(count)
    return Series("processed", start, counts)


def hourly_dead_letters(db: Database, now: float, hours: int = 24) -> Series:
    """Letters dead-lettered per hour over the last ``hours`` hours (from the archive)."""
    start = (now // HOUR_S - hours + 1) * HOUR_S
    counts = [0] * hours
    for bucket, count in db.query(
        "SELECT CAST(FLOOR((dead_lettered_at - {p}) / 3600) AS INTEGER), COUNT(*) FROM dead_letters "
        "WHERE dead_lettered_at >= {p} GROUP BY 1",
        (start, start),
    ):
        if 0 <= int(bucket) < hours:
            counts[int(bucket)] += int(count)
    return Series("dead-lettered", start, counts)


def queue_depths(broker_url: str, routes: Iterable[str], timeout_s: float = 3.0) -> dict[str, int | None]:
    """Messages ready in each route's work and dead-letter queue, by queue name; None for a
    queue that is not declared, or every queue when the broker does not answer."""
    names = [q for route in routes for q in (naming.work_queue(route), naming.dead_letter_queue(route))]
    depths: dict[str, int | None] = dict.fromkeys(names)
    if broker_url.startswith("memory://"):
        return depths  # the embedded broker lives in the worker's process: nothing to ask here
    try:
        with Connection(broker_url, connect_timeout=timeout_s) as conn:
            conn.connect()
            for name in names:
                depths[name] = _ready(conn.connection, name)
    except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError):
        return dict.fromkeys(names)  # the broker did not answer: every depth unknown
    return depths


def _ready(conn: amqp.Connection, queue: str) -> int | None:
    """Ready messages in ``queue`` (a passive declare on a channel of its own: a missing queue
    closes the channel), or None when it is not declared."""
    channel = conn.channel()
    try:
        return channel.queue_declare(queue, passive=True)[1]
    except amqp.exceptions.NotFound:
        return None
    finally:
        if channel.is_open:
            channel.close()


def with_depths(rows: list[RouteActivity], depths: dict[str, int | None]) -> list[RouteActivity]:
    for row in rows:
        row.work_depth = depths.get(naming.work_queue(row.route))
        row.dead_letter_depth = depths.get(naming.dead_letter_queue(row.route))
    return rows
