"""The ingester: takes every route's dead-letter queue (and ``gridbus.unrouted.dlq``) into the
store's dead-letter archive, where operators look at them.

It runs in every worker, in a thread and on a connection of its own (``gridbus worker``;
``GRIDBUS_ARCHIVE_INGEST=false`` turns it off), and alone as ``gridbus dlq ingest``. Several
ingesters share the queues as competing consumers. A batch of letters is committed to the store
first and acked after: a letter whose ack was lost (the process killed in between) comes again
and is recognised by its fingerprint (``dead_letters.letter_id``), so it is archived once. While
the store is down nothing is acked and the dead-letter queue stays the durable hand-off.

What a letter says is read as ``tools.letters`` reads it (which ``x-gridbus-*`` headers gridbus
wrote); the business keys come from its route's ``trace_keys`` when the body meets the contract.
"""

from __future__ import annotations

import socket
import threading
import time
from datetime import datetime
from typing import Callable, Iterable

import amqp
import structlog

from gridbus.contracts import naming
from gridbus.contracts.errors import inert
from gridbus.routes.model import Route
from gridbus.tools.dlq import _channel, _connect, _message_count
from gridbus.tools.letters import UNROUTED, DeadLetter, letter_from
from gridbus.tools.retention import Retention
from gridbus.workers import headers as H
from gridbus.workers.store import Store
from gridbus.workers.store.dead_letters import NewLetter, letter_id

log = structlog.get_logger("gridbus.archive")

#: Longest reason, message type, error type and business key archived (characters): what a
#: publisher's message makes gridbus write stays bounded. They are kept as they are otherwise
#: (the CLI and the console show them through ``letters.visible``).
REASON_MAX_CHARS = 1000
FIELD_MAX_CHARS = 200
MAX_KEYS = 20


def archived(letter: DeadLetter, route: Route | None, now: float) -> NewLetter:
    """What the archive keeps of ``letter`` (``route``: its route, None for an unrouted letter)."""
    trusted = letter.trusted_headers
    death = letter.broker_death
    dead_at = _epoch(trusted.get(H.DEAD_LETTERED_AT)) if letter.headers_from_gridbus else None
    if dead_at is None and death is not None and death.time is not None:
        dead_at = death.time.timestamp()
    attempts = trusted.get(H.ATTEMPT) if letter.headers_from_gridbus else None
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts < 1_000_000:
        attempts = death.count if death is not None else 0
    properties = {k: v for k, v in letter.properties.items() if k != "application_headers"}
    return NewLetter(
        letter_id=letter_id(letter.queue, properties, letter.headers, letter.body),
        route=letter.route,
        queue=letter.queue,
        message_id=_bounded(letter.message_id or "", FIELD_MAX_CHARS),
        message_type=_bounded(properties.get("type") or "", FIELD_MAX_CHARS),
        error_type=_bounded(letter.error_type, FIELD_MAX_CHARS),
        reason=_bounded(letter.error_message, REASON_MAX_CHARS),
        first_failure_at=_epoch(trusted.get(H.FIRST_FAILURE_AT)) if letter.headers_from_gridbus else None,
        last_failure_at=_epoch(trusted.get(H.LAST_FAILURE_AT)) if letter.headers_from_gridbus else None,
        dead_lettered_at=dead_at if dead_at is not None else now,
        attempts=attempts,
        business_keys=business_keys(route, letter.body),
        properties=properties,
        headers=letter.headers,
        body=letter.body,
    )


def business_keys(route: Route | None, body: bytes) -> tuple[str, ...]:
    """The route's trace keys of ``body``, or none when it does not meet the contract (or the
    route has none). Never raises: a letter is archived whatever its body holds."""
    if route is None or route.trace_keys is None or not hasattr(route.contract, "decode"):
        return ()
    try:
        keys = [str(k) for k in route.trace_keys(route.contract.decode(body)) if k]
    except Exception:  # noqa: BLE001 - a body that fails its contract is why most letters are here
        return ()
    return tuple(dict.fromkeys(_bounded(k, FIELD_MAX_CHARS) for k in keys))[:MAX_KEYS]


class Ingester:
    """Consumes the dead-letter queues of ``routes`` (and the unrouted one) into ``store``.

    batch: letters committed together (also the prefetch); linger_s: a batch is committed at the
    latest this long after its first letter; after_commit: called between the commit and the acks
    (tests cut the ingester off there); unrouted: take ``gridbus.unrouted.dlq`` in too;
    retention: enforced between batches (``tools.retention``)."""

    def __init__(
        self,
        broker_url: str,
        routes: Iterable[Route],
        store: Store,
        *,
        batch: int = 200,
        linger_s: float = 0.2,
        clock: Callable[[], float] = time.time,
        after_commit: Callable[[list], None] | None = None,
        unrouted: bool = True,
        retention: Retention | None = None,
    ):
        self.broker_url = broker_url
        self.routes = {r.name: r for r in routes}
        self.store = store
        self.batch, self.linger_s, self.clock = batch, linger_s, clock
        self.after_commit = after_commit
        self.unrouted = unrouted
        self.retention = retention
        self.archived = 0  # letters new to the archive so far
        self.stopping = threading.Event()

    def queues(self) -> list[tuple[str, str, bool]]:
        """(route, dead-letter queue, retry_only) of each queue taken in."""
        found = [(r.name, r.dead_letter_queue, r.source.internal) for r in self.routes.values()]
        return [*found, (UNROUTED, naming.UNROUTED_QUEUE, False)] if self.unrouted else found

    def run(self, *, until_idle_s: float | None = None, reconnect_s: float = 2.0) -> int:
        """Archive until ``stop()`` (or, with ``until_idle_s``, until no letter came for that
        long); reconnects after a broker or store failure. Returns letters newly archived."""
        if self.retention is not None:
            self.retention.record_settings()
        while not self.stopping.is_set():
            try:
                if self._serve(until_idle_s):
                    break
            except (OSError, amqp.exceptions.AMQPError, ConnectionError) as exc:
                log.warning("archive.broker_lost", error=inert(str(exc))[:300], retry_in_s=reconnect_s)
            except Exception as exc:  # noqa: BLE001 - the store is down: nothing was acked, retry later
                log.warning("archive.store_failed", error=inert(f"{type(exc).__name__}: {exc}")[:300],
                            retry_in_s=reconnect_s)
            if until_idle_s is not None and self.stopping.is_set():
                break
            self.stopping.wait(reconnect_s)
        return self.archived

    def stop(self) -> None:
        self.stopping.set()

    def start(self) -> threading.Thread:
        """Run in a daemon thread of its own (the worker's): its connection is its own too."""
        thread = threading.Thread(target=self.run, name="gridbus-archive", daemon=True)
        thread.start()
        return thread

    def _serve(self, until_idle_s: float | None) -> bool:
        """One connection's life; True when idle for ``until_idle_s`` (done)."""
        with _connect(self.broker_url, 10) as conn:
            channel = _channel(conn)
            channel.basic_qos(0, self.batch, False)
            pending: list[tuple[amqp.Message, str, str, bool]] = []
            for route_name, queue, retry_only in self.queues():
                if _message_count(conn, queue) is None:
                    continue  # not declared (yet): `gridbus topology declare`, then a restart takes it in
                channel.basic_consume(
                    queue, callback=lambda m, r=route_name, q=queue, o=retry_only: pending.append((m, r, q, o))
                )
            idle_since, first = time.monotonic(), None
            while not self.stopping.is_set():
                timeout = 0.5 if first is None else max(0.001, first + self.linger_s - time.monotonic())
                try:
                    conn.drain_events(timeout=timeout)
                except socket.timeout:
                    pass
                if self.retention is not None and not pending:
                    self.retention.run_due()
                now = time.monotonic()
                if pending and first is None:
                    first = now
                if pending and (len(pending) >= self.batch or now - first >= self.linger_s):
                    taken, pending[:] = list(pending), []
                    self._archive(channel, taken)
                    idle_since, first = time.monotonic(), None
                elif not pending and until_idle_s is not None and now - idle_since > until_idle_s:
                    return True
            return True

    def _archive(self, channel: amqp.Channel, taken: list[tuple[amqp.Message, str, str, bool]]) -> None:
        now = self.clock()
        letters = [
            archived(letter_from(route, queue, m, retry_only=retry_only), self.routes.get(route), now)
            for m, route, queue, retry_only in taken
        ]
        new = self.store.dead_letters.ingest(letters, at=now)
        self.archived += new
        if self.after_commit is not None:
            self.after_commit(letters)
        for message, *_ in taken:
            channel.basic_ack(message.delivery_tag)
        log.info("archive.ingested", letters=len(letters), new=new, routes=sorted({x.route for x in letters}))


def _bounded(value: object, limit: int) -> str:
    """At most ``limit`` characters (with a marker when cut). Kept as the letter says it, so a
    search by message id finds it; whatever shows it makes it inert (``letters.visible``)."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 8] + "...[cut]"


def _epoch(value: object) -> float | None:
    """An ISO 8601 header gridbus wrote, as seconds since the epoch; None when it is not one."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
