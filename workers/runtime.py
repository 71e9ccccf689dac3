"""The worker: consumes the routes' work queues and settles every message exactly once.

A message is acked only after its fate is confirmed by the broker or the target:
delivered (every step's effect confirmed and recorded), a duplicate or superseded (recorded),
or its retry/dead-letter copy confirmed by the broker. Anything else (a crash, a lost
connection) leaves it unacked, and the broker delivers it again; the store makes the repeat
harmless.

Messages are taken in batches: the consumer callback only collects; the batch is then
processed (each step across the whole batch, see ``Pipeline.start_all``), its outputs confirmed
in one round trip, its effects recorded in one commit, and its messages acked. The round trip
is not idle: the deliveries that arrived meanwhile are read and decoded then (decoding is pure;
the next batch's store lookups and effects wait their turn). A decoder that kills the process
there takes the unrecorded batch in hand with it, which is then published again under the same
output ids, as after a kill at any moment before its commit.

Redelivered messages are processed alone, each processing start counted in the store, so a
message that crashes or hangs the worker is dead-lettered as poison after ``Route.max_crashes``
starts without touching its neighbours.

Schedules that routes' decisions set (``contracts.state.Schedule``) are kept in the store; the
worker sends each one that fell due by its clock to its internal route through the retry
exchange, marks it fired once the broker confirmed it, and so a schedule survives worker and
broker restarts. Messages of routes with trace keys are journalled for ``gridbus trace``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import signal
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from kombu import Consumer, Queue

from gridbus.contracts import naming
from gridbus.routes.model import Route
from gridbus.workers import envelope
from gridbus.workers import headers as H
from gridbus.workers import topology
from gridbus.workers.amqp import AmqpDelivery, BrokerNodes, ConfirmTimeout, KeepAlive, NoNodeAnswered, Publisher, fast_path_refusal, is_amqp, mask_url
from gridbus.workers.amqp import DelayEmulation
from gridbus.contracts.errors import PoisonMessage, RetriesExhausted, TransientDeliveryError
from gridbus.workers.logging import get_logger
from gridbus.workers.pipeline import Delivery, Pipeline
from gridbus.workers.store import DueSchedule, Store

CHINA_TZ = timezone(timedelta(hours=8))
log = get_logger("gridbus.worker")

#: Headers the broker adds; never carried into a copy gridbus republishes.
_BROKER_HEADERS = {H.X_DEATH, H.DELIVERY_COUNT, "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"}

#: Reconnect back-off: the first wait, the longest, and how long a connection must have served
#: (or settled a message) for the next loss to start again from the first wait. Each wait is
#: drawn between half and all of the back-off (jitter), so workers dropped together spread out.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0
SERVED_S = 30.0


#: "...; will retry" at the end of a transient error's reason: not so once the retries are spent.
_WILL_RETRY = re.compile(r"[;,]\s*will retry\s*$")


def china_now() -> datetime:
    return datetime.now(CHINA_TZ)


class Worker:
    """Runs the given routes against one broker until ``stop()`` or SIGTERM.

    adapters: a callable ``(publisher_getter) -> {name: adapter}`` called once at start, so AMQP
    adapters can reach the publisher of the current connection (it changes on reconnect).
    source_users: system code -> the RabbitMQ user whose ``user_id`` its routes accept (default: the code).
    batch_size: the most messages in one batch. batch_linger_s: a batch is closed at the latest
    this long after its first message was taken, full or not (see ``_fill``).
    retention_s: processed ids older than this are forgotten, by a purge started every
    purge_interval_s that removes at most purge_chunk_rows rows per loop turn (``_purge_expired``).
    """

    #: A batch is also closed when no delivery came for this long (seconds).
    QUIET_S = 0.005
    #: Least time between two chunks of the retention purge, so a busy loop gives it a few percent.
    PURGE_PAUSE_S = 0.05

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        broker_url: str,
        store: Store,
        adapters: Callable[[Callable[[], Publisher]], dict],
        prefetch: int = 200,
        batch_size: int = 100,
        batch_linger_s: float = 0.005,
        confirm_timeout_s: float = 30.0,
        message_deadline_s: float = 300.0,
        retention_s: float = 3 * 86400,
        purge_interval_s: float = 3600.0,
        purge_chunk_rows: int = 500,
        clock: Callable[[], datetime] = china_now,
        declare: bool = True,
        schedule_poll_s: float = 1.0,
        heartbeat_s: float = 30.0,
        amqp_fast_path: bool = True,
        name: str = "worker",
        source_users: dict[str, str] | None = None,
    ):
        self.routes = list(routes)
        self.broker_url = broker_url
        #: why the fast path is off although asked for (another py-amqp than it is tested on), else None
        self.fast_path_refused = fast_path_refusal() if amqp_fast_path else None
        self.amqp_fast_path = amqp_fast_path and self.fast_path_refused is None
        self.nodes = BrokerNodes(broker_url, heartbeat_s=heartbeat_s, fast_path=self.amqp_fast_path)
        self.name = name
        #: which node the worker is on, and whether it reads deliveries on the fast path (see _serve)
        self.node: str | None = None
        self.fast_path = False
        self._connected_at: float | None = None
        self._settled_at_connect = 0
        self._next_beat = 0.0
        self._beat_every: float | None = None
        self._consumer_raw = None
        self.store = store
        self.prefetch = prefetch
        self.batch_size = batch_size
        self.batch_linger_s = batch_linger_s
        self.confirm_timeout_s = confirm_timeout_s
        self.message_deadline_s = message_deadline_s
        self.retention_s = retention_s
        self.purge_interval_s = purge_interval_s
        self.purge_chunk_rows = purge_chunk_rows
        self.clock = clock
        self.declare = declare
        self.schedule_poll_s = schedule_poll_s
        self._last_schedule_poll = 0.0
        self._scheduled_routes = [r.name for r in self.routes if r.source.internal]
        self._publisher: Publisher | None = None
        self._consumer_conn = None
        self._ahead_error: BaseException | None = None  # met while working ahead, raised by _fill
        self._failed_in_hand: dict[tuple[str, str], str] = {}  # (route, message id) -> what failed meanwhile
        self.adapters = adapters(self.publisher)
        self.pipeline = Pipeline(store, self.adapters, clock, source_users)
        self._stop = threading.Event()
        self._buffer: list[Delivery] = []
        self._batch_opened: float | None = None  # when the batch being filled took its first message
        self._busy_since: float | None = None
        self._delays = DelayEmulation(self.routes, self.publisher)  # in-memory broker only
        self._last_purge = -math.inf  # the first turn starts a purge
        self._purged: int | None = None  # rows removed so far by the purge under way (None: no purge)
        self.counts: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def publisher(self) -> Publisher:
        if self._publisher is None:
            raise TransientDeliveryError("not connected to the broker")
        return self._publisher

    def stop(self, *_args) -> None:
        """Finish the batch in hand, then return from ``run`` (also the SIGTERM handler)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def start_watchdog(self) -> None:
        """A batch that makes no progress (see ``progressed``) for longer than the deadline is a
        hang: exit, so the messages come back redelivered and the poison guard can find the one that hangs."""

        def watch():
            while not self._stop.wait(1.0):
                since = self._busy_since
                if since is not None and time.monotonic() - since > self.message_deadline_s:
                    log.critical(
                        "worker.hung", routes=[r.name for r in self.routes], deadline_s=self.message_deadline_s,
                        action="exiting for a restart",
                    )
                    os._exit(75)

        threading.Thread(target=watch, name="gridbus-watchdog", daemon=True).start()

    def progressed(self) -> None:
        """A bounded part of the batch in hand ended (a synchronous peer answered, failed or timed
        out): the watchdog counts its deadline from now, so a batch of calls that each end within
        their timeout is never taken for a hang."""
        if self._busy_since is not None:
            self._busy_since = time.monotonic()

    def run(self, *, until: Callable[[], bool] | None = None, idle_timeout_s: float = 0.2) -> None:
        """Consume until stopped (or ``until()`` is true); reconnects after broker failures.

        Every connect tries the broker's nodes in turn (``BrokerNodes``), starting after the one
        whose connection was lost; only when no node answers does the worker wait, with a
        back-off that starts again from ``RECONNECT_FIRST_S`` once a connection has served."""
        backoff = RECONNECT_FIRST_S
        while not self._stop.is_set():
            consumer_conn = publisher_conn = keep_alive = None
            self._connected_at = None
            lost = True
            try:
                consumer_conn = self.nodes.connect(self._connection_name("consumer"))
                publisher_conn = self.nodes.connect(self._connection_name("publisher"))
                self.node = self.nodes.url
                self._connected_at, self._settled_at_connect = time.monotonic(), sum(self.counts.values())
                keep_alive = KeepAlive((consumer_conn, publisher_conn))
                self._serve(consumer_conn, publisher_conn, until, idle_timeout_s)
                lost = False
                return
            except _recoverable(consumer_conn, publisher_conn) as exc:
                if self._served():
                    backoff = RECONNECT_FIRST_S
                if not isinstance(exc, NoNodeAnswered):
                    self.nodes.failed()  # the next connect starts with the following node
                delay = round(backoff * random.uniform(0.5, 1.0), 3)
                log.warning(
                    "broker.connection_lost", node=mask_url(self.node or self.nodes.url),
                    error=mask_url(f"{type(exc).__name__}: {exc}"), retry_in_s=delay, exc_info=True,
                )
                self._stop.wait(delay)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
            finally:
                if keep_alive is not None:
                    keep_alive.stop()
                self._publisher = self._consumer_conn = self._ahead_error = None
                self.node, self.fast_path = None, False
                for conn in (consumer_conn, publisher_conn):
                    if conn is not None:
                        _close(conn, graceful=not lost)
                # Deliveries still in hand belong to the closed channel: they come again on the next one.
                self._buffer = []

    def _connection_name(self, role: str) -> str:
        """What ``rabbitmqctl list_connections client_properties`` shows as connection_name."""
        return f"gridbus {self.name}@{socket.gethostname()} pid {os.getpid()} {role}"

    def _served(self) -> bool:
        """The connection just lost was up for ``SERVED_S`` or settled a message."""
        if self._connected_at is None:
            return False
        return time.monotonic() - self._connected_at >= SERVED_S or sum(self.counts.values()) > self._settled_at_connect

    def _keep_alive(self) -> None:
        """Heartbeats, about four times an interval: both connections' checks (a broker silent
        for two intervals raises ``ConnectionForced``), after ``_fill`` has read the consuming
        connection; the publishing one is read by ``keep_alive``. While a batch or a confirm
        wait keeps the loop away, ``KeepAlive`` sends the heartbeats the broker expects."""
        if self._beat_every is None or self._stop.is_set():
            return  # stopping: _fill has not read the connection, and nothing will wait on it
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self._beat_every
        self._consumer_raw.heartbeat_tick()  # py-amqp's own: kombu's would reconnect a dead connection first
        self.publisher().keep_alive()

    def _serve(self, consumer_conn, publisher_conn, until, idle_timeout_s) -> None:
        channel = consumer_conn.channel()
        if self.declare:
            topology.declare(channel, topology.derive(self.routes))
        self._publisher = Publisher(
            publisher_conn, confirm_timeout_s=self.confirm_timeout_s, fast_path=self.amqp_fast_path
        )
        self._amqp = is_amqp(consumer_conn)
        self._consumer_conn = consumer_conn if self._amqp else None
        self._consumer_raw = consumer_conn.connection
        heartbeat = getattr(self._consumer_raw, "heartbeat", 0) if self._amqp else 0
        self._beat_every = heartbeat / 4 if heartbeat else None
        consumers = []
        if self._amqp:
            # py-amqp's deliveries as they come, without kombu's Message around each (see AmqpDelivery)
            channel.auto_decode = False  # bodies stay the bytes sent, whatever content_encoding says
            channel.basic_qos(0, self.prefetch, False)
            fast = getattr(consumer_conn.connection, "fast_consumers", None)
            for route in self.routes:
                collect = self._amqp_collector(route)
                tag = channel.basic_consume(route.work_queue, callback=lambda m, c=collect: c(AmqpDelivery.of(m, channel)))
                if fast is not None:
                    fast[tag] = collect  # read by amqp.deliveries_frame_handler
                consumers.append(tag)
        else:
            for route in self.routes:
                queue = Queue(route.work_queue, no_declare=True)
                consumer = Consumer(
                    channel, queues=[queue], on_message=self._collector(route), prefetch_count=self.prefetch
                )
                consumer.consume()
                consumers.append(consumer)
        self.fast_path = bool(getattr(consumer_conn.connection, "fast_consumers", None))
        log.info(
            "worker.started", routes=[r.name for r in self.routes], broker=_safe_url(self.broker_url),
            node=_safe_url(self.nodes.url), fast_path=self.fast_path, heartbeat_s=heartbeat,
            **({"fast_path_refused": self.fast_path_refused} if self.fast_path_refused else {}),
        )
        while not self._stop.is_set():
            self._fill(consumer_conn, idle_timeout_s)
            self._keep_alive()
            if self._buffer:
                self._process_buffer()
            elif until is not None and until():
                break
            if not self._amqp:
                self._delays.move_due(channel)
            self._fire_due_schedules()
            self._purge_expired()
        for consumer in consumers:
            try:
                if self._amqp:
                    channel.basic_cancel(consumer)
                    getattr(consumer_conn.connection, "fast_consumers", {}).pop(consumer, None)
                else:
                    consumer.cancel()
            except Exception:  # noqa: BLE001
                pass
        log.info("worker.stopped", counts=self.counts)

    def _collector(self, route: Route):
        def collect(message):
            self._buffer.append(Delivery(route=route, message=message))

        return collect

    def _amqp_collector(self, route: Route):
        def collect(delivery: AmqpDelivery):
            self._buffer.append(Delivery(route=route, message=delivery))

        return collect

    def _fill(self, conn, idle_timeout_s: float) -> None:
        """Read deliveries until the batch is full, the broker is quiet for ``QUIET_S``, or the
        batch's linger is over: ``batch_linger_s`` from its first message (as Kafka's
        ``linger.ms``), so under a steady trickle no message waits for a whole batch to fill.
        With nothing to take, return after ``idle_timeout_s`` (the loop's other work)."""
        if self._ahead_error is not None:
            error, self._ahead_error = self._ahead_error, None
            raise error
        buffer = self._buffer
        if not buffer:
            self._batch_opened = None
        idle_deadline = time.monotonic() + idle_timeout_s
        while len(buffer) < self.batch_size and not self._stop.is_set():
            if self._amqp:
                self._read_buffered(conn)  # frames already read are taken at once, linger or not
                if len(buffer) >= self.batch_size:
                    return
            now = time.monotonic()
            if buffer:
                if self._batch_opened is None:
                    self._batch_opened = now
                timeout = min(self._batch_opened + self.batch_linger_s - now, self.QUIET_S)
            else:
                timeout = idle_deadline - now
            if timeout <= 0:
                if buffer:
                    self._read_arrived(conn)  # the linger is over, but what has come is taken
                return
            try:
                conn.drain_events(timeout=timeout)
            except socket.timeout:
                if buffer or time.monotonic() >= idle_deadline:
                    return

    def _read_buffered(self, conn) -> None:
        """Hand py-amqp the frames already read from the socket, straight to its frame handler:
        what ``drain_events`` does for each, without its layers and timeouts (nothing to wait for)."""
        connection = conn.connection
        transport = connection.transport
        buffered = getattr(transport, "frame_buffered", None)
        if buffered is None:
            return
        on_frame, read_frame, buffer, batch_size = connection.on_inbound_frame, transport.read_frame, self._buffer, self.batch_size
        while len(buffer) < batch_size and buffered():
            on_frame(read_frame())

    def _read_arrived(self, conn) -> None:
        """Take, up to a batch, what the socket holds now, without waiting for more."""
        receive = getattr(conn.connection.transport, "receive_ready", None) if self._amqp else None
        if receive is None:
            return
        buffer = self._buffer
        while True:
            self._read_buffered(conn)
            if len(buffer) >= self.batch_size or not receive():
                return

    def _work_ahead(self) -> None:
        """While a batch's confirms are on their way (the broker's round trip, idle time
        otherwise): take the deliveries that have arrived meanwhile, up to a batch, and decode
        them. Decoding is pure; all that reads or writes the store waits for their own batch, after
        this one is settled. A failure of the consuming connection met here is raised by the next
        ``_fill``, once this batch is settled, where it would have been met without working ahead."""
        conn = self._consumer_conn
        receive = getattr(conn.connection.transport, "receive_ready", None) if conn is not None else None
        if receive is None or self._ahead_error is not None:
            return
        buffer, taken, started = self._buffer, len(self._buffer), time.monotonic()
        try:
            while True:
                self._read_buffered(conn)
                if len(buffer) >= self.batch_size or not receive():
                    break
        except Exception as exc:  # noqa: BLE001 - see the docstring
            self._ahead_error = exc
        if buffer and self._batch_opened is None:
            self._batch_opened = started  # the next batch's linger runs from here
        # a redelivered message is decoded only after its start was counted (see _is_poison)
        self.pipeline.decode_ahead([d for d in buffer[taken:] if not d.redelivered], {})

    # -- processing ---------------------------------------------------------------------------

    def _process_buffer(self) -> None:
        """Process the first ``batch_size`` deliveries taken. More can be waiting: before the loop
        starts, subscribing to one route's queue after another reads the deliveries of those
        subscribed first (up to the prefetch of each); they stay for the next batches, so no
        batch, the first after a start included, is larger than ``batch_size``."""
        batch, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
        if not self._buffer:
            self._batch_opened = None
        plain: list[Delivery] = []
        for d in batch:
            if d.redelivered:
                if plain:
                    self._process(plain)
                    plain = []
                self._process([d], suspect=True)
            else:
                plain.append(d)
        if plain:
            self._process(plain)

    def _process(self, batch: list[Delivery], suspect: bool = False) -> None:
        self._busy_since = time.monotonic()
        try:
            self._process_in_hand(batch, suspect)
        except Exception as exc:
            # The connection (or the store) failed with this batch in hand: the messages come
            # back redelivered. Should one of them be the cause, and turn poison, its dead letter
            # says what happened while it was in hand.
            cause = f"{type(exc).__name__}: {exc}"
            for d in batch:
                if d.message_id:
                    self._failed_in_hand[(d.route.name, d.message_id)] = cause
            if len(self._failed_in_hand) > 10_000:
                self._failed_in_hand.clear()
            raise
        finally:
            self._busy_since = None

    def _process_in_hand(self, batch: list[Delivery], suspect: bool) -> None:
        seen: set[tuple[str, str]] = set()
        known = {} if suspect else self.store.lookup((d.route.name, d.message_id) for d in batch if d.message_id)
        if not suspect:  # a suspect is decoded only after its start was counted (see _is_poison)
            self.pipeline.decode_ahead(batch, known)
        to_start = []
        for d in batch:
            key = (d.route.name, d.message_id or "")
            if d.message_id and key in seen:
                d.outcome = "duplicate"  # the same message twice in one batch: one copy is enough
                continue
            seen.add(key)
            if suspect and d.message_id and self._is_poison(d):
                continue  # a finished message is a duplicate, never poison: see _is_poison
            to_start.append((d, known.get(key)))
        self.pipeline.start_all(to_start)
        self._settle_outputs(batch)
        for d in batch:
            if d.error is not None:
                self._send_copy(d)
        settled = self.publisher().wait() if any(d.settle_ticket for d in batch) else {}
        self._settle_messages(batch, settled)
        if suspect:
            for d in batch:
                if d.message_id and d.outcome != "requeued":
                    self.store.end_attempt(d.route.name, d.message_id)
                    self._failed_in_hand.pop((d.route.name, d.message_id), None)

    def _is_poison(self, d: Delivery) -> bool:
        """Count this start of a redelivered message; poison once it started too often without outcome."""
        if self.store.outcome(d.route.name, d.message_id) is not None:
            return False
        starts = self.store.begin_attempt(d.route.name, d.message_id)
        if starts >= d.route.max_crashes:
            cause = self._failed_in_hand.pop((d.route.name, d.message_id), None)
            also = f"; the last time, this failed while it was in hand: {cause}" if cause else ""
            d.error = PoisonMessage(
                f"taken up {starts + 1} times without reaching an outcome: processing it crashes or hangs the "
                f"worker, or breaks its connection (limit {d.route.max_crashes} restarts){also}"
            )
            return True
        return False

    def _settle_outputs(self, batch: list[Delivery]) -> None:
        if not any(d.tickets for d in batch):
            results = {}
        else:
            results = self.publisher().wait(meanwhile=self._work_ahead)
        effects, outcomes = [], []
        for d in batch:
            confirmed = []
            for ticket, step in d.tickets.items():
                error = results.get(ticket, ConfirmTimeout("publish outcome unknown"))
                if error is None:
                    confirmed.append((d.route.name, d.message_id, step))
                    d.delivered.append(step)
                elif d.error is None:
                    d.error = TransientDeliveryError(f"step {step}: {error.reason if hasattr(error, 'reason') else error}")
            if d.error is None and d.outcome in ("delivered", "superseded"):
                # Finished in this commit: the outcome says every step took effect.
                outcomes.append((d.route.name, d.message_id, d.outcome))
            else:
                effects += confirmed  # partial progress: a retry repeats only the rest
        self.store.record(effects=effects, outcomes=outcomes)

    def _send_copy(self, d: Delivery) -> None:
        """Publish the message's retry copy (to a delay queue) or its dead letter.

        The copy carries the message's own headers as far as they fit (``envelope.fit``), and
        gridbus's: its history only from a copy that came back through the retry exchange (the
        publisher's ``x-gridbus-*`` headers were dropped at intake), the source user only as
        the broker validated it."""
        route, error, now = d.route, d.error, self.clock()
        carried = {k: v for k, v in d.headers.items() if k not in _BROKER_HEADERS}
        first = carried.get(H.FIRST_FAILURE_AT)
        headers = {
            H.FIRST_FAILURE_AT: first if type(first) is str else now.isoformat(),
            H.LAST_FAILURE_AT: now.isoformat(),
            H.ERROR_TYPE: error.kind,
            H.ERROR_MESSAGE: error.reason,
            H.ROUTE: route.name,
        }
        if d.envelope.dropped:
            headers[H.UNTRUSTED_DROPPED] = envelope.names(d.envelope.dropped)
        info = d.message.delivery_info
        if info.get("exchange") != naming.RETRY_EXCHANGE:
            headers[H.ORIGINAL_EXCHANGE] = info.get("exchange", "")
            headers[H.ORIGINAL_ROUTING_KEY] = info.get("routing_key", "")
        properties = {k: v for k, v in d.properties.items() if k not in ("user_id", "application_headers")}
        user = d.source_user
        if user:
            headers[H.SOURCE_USER] = user
        if isinstance(error, TransientDeliveryError) and d.attempt < route.retry.attempts:
            delay = route.retry.delay_for(d.attempt)
            headers[H.ATTEMPT] = d.attempt + 1
            headers[H.DUE_AT] = time.time() + delay
            d.outcome = "retry-scheduled"
            exchange, routing_key = "", route.delay_queue(delay)
        else:
            if isinstance(error, TransientDeliveryError):
                last = _WILL_RETRY.sub("", error.reason)
                d.error = RetriesExhausted(f"gave up after {d.attempt} attempts; last error: {last}")
                headers[H.ERROR_TYPE] = d.error.kind
                headers[H.ERROR_MESSAGE] = d.error.reason
            headers[H.ATTEMPT] = d.attempt
            headers[H.DEAD_LETTERED_AT] = now.isoformat()
            d.outcome = "dead-lettered"
            exchange, routing_key = naming.DEAD_LETTER_EXCHANGE, route.name
        d.settle_ticket = self.publisher().publish(
            exchange=exchange, routing_key=routing_key, body=d.body, properties=properties,
            headers=envelope.fit(headers, carried),
        )

    def _settle_messages(self, batch: list[Delivery], settled: dict) -> None:
        """Requeue what could not be settled, ack the rest (on RabbitMQ with one multiple-ack:
        every earlier delivery on the channel is settled by now, as batches run in order)."""
        to_ack = []
        for d in batch:
            if d.settle_ticket is not None and settled.get(d.settle_ticket, ConfirmTimeout("unknown")) is not None:
                d.message.reject(requeue=True)  # the copy did not make it: keep the original
                d.outcome = "requeued"
            else:
                to_ack.append(d)
        if self._amqp and to_ack:
            max(to_ack, key=lambda d: d.message.delivery_tag).message.ack(multiple=True)
        else:
            for d in to_ack:
                d.message.ack()
        info = log.is_enabled_for(logging.INFO)
        for d in batch:
            self._log_outcome(d, info)
        self._journal(batch)

    def _log_outcome(self, d: Delivery, info: bool) -> None:
        self.counts[d.outcome] = self.counts.get(d.outcome, 0) + 1
        if d.error is None and not info:
            return
        fields = dict(
            message_id=d.message_id,
            correlation_id=d.correlation_id,
            route=d.route.name,
            outcome=d.outcome,
            attempt=d.attempt,
            duration_ms=round((time.monotonic() - d.started) * 1000, 2),
        )
        if d.error is not None:
            log.warning("message", error_type=d.error.kind, reason=d.error.reason, **fields)
        else:
            log.info("message", **fields)

    def _journal(self, batch: list[Delivery]) -> None:
        """The trace journal: every outcome and delivery of messages that have business keys."""
        traced = [d for d in batch if d.trace_keys]
        if not traced:
            return
        at = self.clock().timestamp()
        rows = []
        for d in traced:
            if d.error is not None:
                detail = f"{d.error.kind}: {d.error.reason}"
            else:
                detail = f"{d.properties.get('type')} from {d.route.source.system}"
            if d.attempt > 1:
                detail += f" (attempt {d.attempt})"
            entries = [(d.outcome or "", detail)]
            entries += [
                ("sent", f"{step} -> {d.outputs[step][0]} (message {d.outputs[step][1]})")
                for step in d.delivered
                if step in d.outputs
            ]
            rows += [(at, key, event, d.route.name, d.message_id or "", text) for key in d.trace_keys for event, text in entries]
        self.store.journal(rows)

    # -- durable schedules ----------------------------------------------------------------------

    def _fire_due_schedules(self) -> None:
        """Send every schedule that fell due to its route; mark it fired once confirmed."""
        if not self._scheduled_routes or time.monotonic() - self._last_schedule_poll < self.schedule_poll_s:
            return
        self._last_schedule_poll = time.monotonic()
        now = self.clock()
        due = self.store.due_schedules(self._scheduled_routes, now)
        if not due:
            return
        tickets = {self._publish_schedule(s, now): s for s in due}
        results = self.publisher().wait()
        for ticket, schedule in tickets.items():
            error = results.get(ticket, ConfirmTimeout("publish outcome unknown"))
            if error is None:
                self.store.mark_fired(schedule, now)
                log.info("schedule.fired", route=schedule.route, key=schedule.key, message_id=schedule.message_id)
            else:  # still pending: the next poll sends it again, under the same message id
                log.warning("schedule.not_sent", route=schedule.route, key=schedule.key, error=str(error))

    def _publish_schedule(self, schedule: DueSchedule, now: datetime) -> int:
        route = next(r for r in self.routes if r.name == schedule.route)
        return self.publisher().publish(
            exchange=naming.RETRY_EXCHANGE,
            routing_key=route.name,
            body=json.dumps(schedule.payload, ensure_ascii=False, sort_keys=True).encode("utf-8"),
            properties={
                "message_id": schedule.message_id,
                "correlation_id": schedule.message_id,
                "type": route.contract.message_type,
                "content_type": "application/json",
                "timestamp": int(now.timestamp()),
                "app_id": "gridbus",
            },
            headers={H.SOURCE_USER: route.source.system, H.ROUTE: route.name},
        )

    def _purge_expired(self) -> None:
        """The retention purge, one chunk of at most ``purge_chunk_rows`` rows per loop turn
        (and at most one every ``PURGE_PAUSE_S``): started every ``purge_interval_s``, it goes on
        turn after turn until nothing older than the retention is left. A turn spends a few
        milliseconds on it, never the seconds that hundreds of thousands of rows in one
        transaction take. It runs on busy turns too: a worker under a steady load may never see
        an idle one."""
        now = time.monotonic()
        if self._purged is None:
            if now - self._last_purge < self.purge_interval_s:
                return
            self._purged = 0
        elif now - self._last_purge < self.PURGE_PAUSE_S:
            return
        self._last_purge = now
        removed = self.store.purge_older_than(self.retention_s, limit=self.purge_chunk_rows)
        self._purged += removed
        if removed < self.purge_chunk_rows:  # nothing older left
            if self._purged:
                log.info("store.purged", rows=self._purged, retention_s=self.retention_s)
            self._purged = None


def _recoverable(*connections) -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError

    errors: tuple = (ConnectionError, socket.error, ConfirmTimeout, TimeoutError, OperationalError)
    for conn in connections:
        if conn is not None:
            errors += tuple(conn.recoverable_connection_errors) + tuple(conn.recoverable_channel_errors)
            errors += tuple(conn.connection_errors)
    try:
        import amqp.exceptions

        errors += (amqp.exceptions.RecoverableConnectionError, amqp.exceptions.ConnectionForced)
    except ImportError:  # pragma: no cover
        pass
    return errors


def _safe_url(url: str) -> str:
    """The broker setting with every node's password masked."""
    return mask_url(url)


def _close(conn, *, graceful: bool) -> None:
    """Close a connection: with the AMQP handshake after a clean stop; after a failure by
    dropping the socket (the handshake would wait on a broker that may never answer)."""
    try:
        conn.release() if graceful else conn.collect()
    except Exception:  # noqa: BLE001 - the connection may be dead already
        pass
