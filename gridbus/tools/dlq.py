"""Dead-letter queues for operators: list, show, replay and purge.

Every function opens a broker connection of its own and closes it before returning. Browsing
takes messages with ``basic_get`` without acking them and closes the channel afterwards, so the
broker requeues everything it handed out: looking never consumes or loses anything.

Replay publishes a copy to the retry exchange (routing key = route name, which leads into the
route's work queue only), waits for the publisher confirm, and only then acks the dead letter.
A replay cut off at any point leaves every message in the dead-letter queue, in the work queue,
or in both; the route's idempotency store recognises the repeat in the last case.

What arrives through ``gridbus.retry`` is read as gridbus's own (its ``x-gridbus-*`` headers,
the source user among them), so a copy carries only headers gridbus wrote: see
``tools.letters`` for which letters those are, and ``replay_copy``.
"""

from __future__ import annotations

import getpass
import socket
import time
from collections import Counter
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

import amqp
from kombu import Connection

from gridbus.contracts import naming
from gridbus.routes.model import Route
from gridbus.workers import envelope
from gridbus.workers import headers as H
from gridbus.tools.letters import UNROUTED, UNROUTED_ERROR_TYPE, DeadLetter, letter_from, visible

#: Headers the broker sets; a replayed copy never carries them into the work queue.
_BROKER_HEADERS = frozenset(
    {H.X_DEATH, H.DELIVERY_COUNT, "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"}
)

#: Longest operator name written to ``x-gridbus-replayed-by`` (characters, after escaping).
OPERATOR_MAX_CHARS = 64


class DlqError(Exception):
    """An operator request that cannot be carried out; the message says why and what to do."""


@dataclass(frozen=True)
class Summary:
    """Dead letters of one route: ``total`` from the queue itself, ``by_error_type`` from browsing."""

    route: str
    queue: str
    total: int
    by_error_type: dict[str, int]
    exists: bool = True


@dataclass
class ReplayResult:
    """What a replay did: ``replayed`` and ``failed`` hold ``(route, message_id)`` / ``(route, message_id, reason)``."""

    replayed: list[tuple[str, str | None]] = field(default_factory=list)
    failed: list[tuple[str, str | None, str]] = field(default_factory=list)
    left_in_dlq: int = 0
    ids_not_found: list[str] = field(default_factory=list)

    def count_by_route(self) -> dict[str, int]:
        return dict(Counter(route for route, _ in self.replayed))


# --- queries -------------------------------------------------------------------------------------


def list_dead_letters(broker_url: str, routes: Iterable[Route], *, connect_timeout: float = 10) -> list[Summary]:
    """Counts of dead letters per route and error type, the unrouted queue last. Nothing is consumed."""
    summaries = []
    with _connect(broker_url, connect_timeout) as conn:
        for route_name, queue, retry_only in _queues(routes, with_unrouted=True):
            total = _message_count(conn, queue)
            if total is None:
                summaries.append(Summary(route_name, queue, 0, {}, exists=False))
                continue
            letters = _browse_queue(conn, route_name, queue, total, retry_only)
            kinds = Counter(letter.error_type for letter in letters)
            summaries.append(Summary(route_name, queue, total, dict(sorted(kinds.items()))))
    return summaries


def show(
    broker_url: str,
    routes: Iterable[Route],
    *,
    message_id: str | None = None,
    route: str | None = None,
    limit: int = 20,
    connect_timeout: float = 10,
) -> list[DeadLetter]:
    """Up to ``limit`` dead letters (all headers, body bytes), optionally of one route or one message id."""
    found: list[DeadLetter] = []
    with _connect(broker_url, connect_timeout) as conn:
        for route_name, queue, retry_only in _selected_queues(routes, route, with_unrouted=True):
            total = _message_count(conn, queue) or 0
            with closing(_browse_queue(conn, route_name, queue, total, retry_only)) as letters:
                for letter in letters:
                    if message_id is None or letter.message_id == message_id:
                        found.append(letter)
                        if len(found) >= limit:
                            return found
    return found


# --- changes -------------------------------------------------------------------------------------


def replay(
    broker_url: str,
    routes: Iterable[Route],
    *,
    ids: Iterable[str] | None = None,
    route: str | None = None,
    error_type: str | None = None,
    limit: int | None = None,
    confirm_timeout: float = 30.0,
    connect_timeout: float = 10,
    operator: str | None = None,
    after_publish: Callable[[DeadLetter], None] | None = None,
) -> ReplayResult:
    """Move matching dead letters back into their route's work queue.

    Matches all of: ``ids`` (message ids), ``route``, ``error_type`` (as ``list_dead_letters``
    shows it); ``limit`` caps how many are moved. Each copy is ``replay_copy(letter)``, with
    ``operator`` (default: the OS user) as who replayed it. The dead letter is acked only after
    the broker confirmed the copy.

    ``after_publish`` is called between the confirm and the ack (for tests that cut a replay off).
    """
    if route == UNROUTED or error_type == UNROUTED_ERROR_TYPE:
        raise DlqError(
            f"messages in {naming.UNROUTED_QUEUE} cannot be replayed: no route is bound to their exchange and "
            "routing key. Add a route for them (then republish from the source), or purge them with "
            f"`gridbus dlq purge --route '{UNROUTED}' --yes-i-am-sure`."
        )
    wanted = set(ids) if ids else None
    seen_ids: set[str] = set()
    result = ReplayResult()
    replayed_by = operator_name(operator)
    try:
        with _connect(broker_url, connect_timeout) as conn:
            for route_name, queue, retry_only in _selected_queues(routes, route, with_unrouted=False):
                if limit is not None and len(result.replayed) >= limit:
                    break
                _replay_queue(
                    conn, (route_name, queue, retry_only), result, seen_ids, wanted, error_type, limit,
                    confirm_timeout, replayed_by, after_publish,
                )
    except (OSError, amqp.exceptions.AMQPError) as exc:
        raise DlqError(
            f"the connection to RabbitMQ failed after {len(result.replayed)} message(s) were replayed ({exc!r}). "
            "Nothing is lost: what was not acked is back in its dead-letter queue; run the replay again "
            "(copies that already arrived are recognised as repeats)."
        ) from exc
    if wanted and (limit is None or len(result.replayed) < limit):
        result.ids_not_found = sorted(wanted - seen_ids)
    return result


def _replay_queue(
    conn: amqp.Connection,
    source: tuple[str, str, bool],
    result: ReplayResult,
    seen_ids: set[str],
    wanted: set[str] | None,
    error_type: str | None,
    limit: int | None,
    confirm_timeout: float,
    replayed_by: str,
    after_publish: Callable[[DeadLetter], None] | None,
) -> None:
    route_name, queue, retry_only = source
    total = _message_count(conn, queue)
    if not total:
        return
    channel = _channel(conn)
    acked = 0
    returned: list[str] = []
    channel.events["basic_return"].add(lambda exc, *_: returned.append(str(exc)))
    try:
        for delivery in _get_up_to(channel, queue, total):
            if limit is not None and len(result.replayed) >= limit:
                break  # this one and the rest stay in the queue
            letter = letter_from(route_name, queue, delivery, retry_only=retry_only)
            if letter.message_id:
                seen_ids.add(letter.message_id)
            if (wanted is not None and letter.message_id not in wanted) or (
                error_type is not None and letter.error_type != error_type
            ):
                result.left_in_dlq += 1
                continue  # left unacked: requeued when the channel closes
            failure = _publish_copy(channel, replay_copy(letter, replayed_by), letter, returned, confirm_timeout)
            if failure:
                result.failed.append((route_name, letter.message_id, failure))
                result.left_in_dlq += 1
                continue
            if after_publish is not None:
                after_publish(letter)
            channel.basic_ack(delivery.delivery_tag)
            acked += 1
            result.replayed.append((route_name, letter.message_id))
    finally:
        _close_quietly(channel)
    _settle(conn, queue, total - acked)


def _publish_copy(
    channel: amqp.Channel, copy: amqp.Message, letter: DeadLetter, returned: list[str], confirm_timeout: float
) -> str | None:
    """Publish the replay copy and wait for its confirm; the reason it failed, or None."""
    returned.clear()
    try:
        channel.basic_publish_confirm(
            copy,
            exchange=naming.RETRY_EXCHANGE,
            routing_key=letter.route,
            mandatory=True,
            confirm_timeout=confirm_timeout,
        )
    except (socket.timeout, TimeoutError) as exc:
        raise DlqError(
            f"no publisher confirm within {confirm_timeout:g} s for message {visible(letter.message_id or '-')} "
            f"of {letter.route}; "
            f"it stays in {letter.queue}. Check the broker and replay again (a copy that did arrive is "
            "recognised as a repeat)."
        ) from exc
    except amqp.exceptions.MessageNacked:
        return "the broker refused the copy (nack): is the work queue full?"
    if returned:
        return (
            f"no queue is bound to {naming.RETRY_EXCHANGE} with key {letter.route} ({returned[0]}): "
            "run `gridbus topology declare` and replay again"
        )
    return None


def replay_copy(letter: DeadLetter, replayed_by: str = "unknown", now: datetime | None = None) -> amqp.Message:
    """The message replay publishes: the same body and properties, and only headers gridbus wrote.

    - ``x-gridbus-*`` headers gridbus did not write (every one on an unrouted letter, or on the
      publisher's original that RabbitMQ dead-lettered itself) are dropped: the copy enters
      through ``gridbus.retry``, where they would be read as gridbus's history;
    - the source user is ``DeadLetter.source_user`` (the broker-checked ``user_id``, or what
      gridbus recorded from it), never invented: without one the route refuses the copy again;
    - the broker's headers (``x-death``, ``x-delivery-count``, ``x-first-death-*``) are dropped;
    - ``x-gridbus-attempt`` starts again at 1, ``x-gridbus-replayed`` counts one more, and
      ``x-gridbus-replayed-by`` / ``-at`` say who replayed it last and when (bounded).
    """
    carried = {k: v for k, v in letter.trusted_headers.items() if k not in _BROKER_HEADERS}
    carried.pop(H.SOURCE_USER, None)
    own = {
        H.REPLAYED: _replay_count(carried.get(H.REPLAYED)) + 1,
        H.ATTEMPT: 1,
        H.REPLAYED_BY: replayed_by,
        H.REPLAYED_AT: (now or datetime.now(timezone.utc)).isoformat(timespec="milliseconds"),
    }
    source_user = letter.source_user
    if source_user:
        own[H.SOURCE_USER] = source_user
    properties = {k: v for k, v in letter.properties.items() if k not in ("application_headers", "user_id")}
    # within a frame whatever the letter carries (see workers.envelope.fit)
    return amqp.Message(letter.body, application_headers=envelope.fit(own, carried), **properties)


def operator_name(operator: str | None = None) -> str:
    """Who replays, for ``x-gridbus-replayed-by``: ``operator`` or the OS user, escaped and bounded."""
    if not operator:
        try:
            operator = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name in the environment or the password database
            operator = "unknown"
    return visible(operator)[:OPERATOR_MAX_CHARS]


def _replay_count(value: object) -> int:
    """The replay counter gridbus wrote; anything else (a bad type, a huge number) counts as 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, str) and value.isdigit() and len(value) <= 6:
        value = int(value)
    return value if isinstance(value, int) and 0 <= value < 1_000_000 else 0


def purge(broker_url: str, route: str, *, confirm: bool, connect_timeout: float = 10) -> int:
    """Delete every dead letter of ``route`` (or ``(unrouted)``); returns how many. Needs ``confirm=True``."""
    if not confirm:
        raise DlqError(f"refusing to purge the dead letters of {route}: purging deletes them for good; confirm it")
    queue = naming.UNROUTED_QUEUE if route == UNROUTED else naming.dead_letter_queue(route)
    with _connect(broker_url, connect_timeout) as conn:
        if _message_count(conn, queue) is None:
            raise DlqError(f"there is no queue {queue}: is {route!r} a route name? (`gridbus dlq list` shows them)")
        channel = _channel(conn)
        try:
            return int(channel.queue_purge(queue) or 0)
        finally:
            _close_quietly(channel)


# --- broker plumbing -----------------------------------------------------------------------------


@contextmanager
def _connect(broker_url: str, connect_timeout: float) -> Iterator[amqp.Connection]:
    if not broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        raise DlqError(f"dead-letter tools need RabbitMQ (amqp://...), not {broker_url.split(':', 1)[0]}://")
    conn = Connection(broker_url, connect_timeout=connect_timeout)
    try:
        conn.connect()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
        raise DlqError(f"cannot reach RabbitMQ at {conn.as_uri()}: {exc}") from exc
    try:
        yield conn.connection
    finally:
        conn.release()


def _channel(conn: amqp.Connection) -> amqp.Channel:
    channel = conn.channel()
    channel.auto_decode = False  # bodies stay bytes, whatever content_encoding says
    return channel


def _close_quietly(channel: amqp.Channel) -> None:
    try:
        channel.close()
    except Exception:  # noqa: BLE001 - the connection may be gone; the broker requeues anyway
        pass


def _message_count(conn: amqp.Connection, queue: str) -> int | None:
    """Ready messages in ``queue``, or None when it does not exist (passive declare)."""
    channel = _channel(conn)
    try:
        _, count, _ = channel.queue_declare(queue, passive=True)
        return count
    except amqp.exceptions.NotFound:
        return None
    finally:
        _close_quietly(channel)


def _get_up_to(channel: amqp.Channel, queue: str, count: int) -> Iterator[amqp.Message]:
    for _ in range(count):
        delivery = channel.basic_get(queue, no_ack=False)
        if delivery is None:
            return
        yield delivery


def _browse_queue(conn: amqp.Connection, route: str, queue: str, count: int, retry_only: bool) -> Iterator[DeadLetter]:
    """Every message now ready in ``queue``, taken unacked and requeued when the channel closes."""
    channel = _channel(conn)
    try:
        for delivery in _get_up_to(channel, queue, count):
            yield letter_from(route, queue, delivery, retry_only=retry_only)
    finally:
        _close_quietly(channel)
        _settle(conn, queue, count)


def _settle(conn: amqp.Connection, queue: str, expected: int, timeout: float = 2.0) -> None:
    """Wait (at most ``timeout`` s) until the broker shows the requeued messages as ready again.

    Quorum queues take returned messages back asynchronously; without this, a command run right
    after another could count too few.
    """
    deadline = time.monotonic() + timeout
    try:
        while (_message_count(conn, queue) or 0) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
    except (OSError, amqp.exceptions.AMQPError):
        pass  # best effort: the connection is gone, and with it every unacked message went back


def _queues(routes: Iterable[Route], *, with_unrouted: bool) -> list[tuple[str, str, bool]]:
    """``(route name, dead-letter queue, retry_only)``: ``retry_only`` for an internal route, whose
    work queue is bound to ``gridbus.retry`` alone (``workers.topology``)."""
    queues = [(r.name, r.dead_letter_queue, r.source.internal) for r in routes]
    if with_unrouted:
        queues.append((UNROUTED, naming.UNROUTED_QUEUE, False))
    return queues


def _selected_queues(
    routes: Iterable[Route], route: str | None, *, with_unrouted: bool
) -> list[tuple[str, str, bool]]:
    queues = _queues(routes, with_unrouted=with_unrouted)
    if route is None:
        return queues
    selected = [q for q in queues if q[0] == route]
    if not selected:
        known = ", ".join(name for name, _, _ in queues)
        raise DlqError(f"unknown route {route!r}; known: {known}")
    return selected
