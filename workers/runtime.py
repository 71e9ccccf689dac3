"""The worker: consumes the routes' work queues and settles every message exactly once.

One loop per worker: ``Intake.fill`` takes a batch of deliveries, ``Settlement.run`` processes and
settles it (see there for what "settled" means), and the parts (``workers.parts``: outcome log,
trace journal, durable schedules, retention purge) are called per batch and per turn. This module
holds the loop and what keeps it connected: the broker's nodes tried in turn, reconnection with a
back-off, heartbeats, the watchdog, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable

from kombu import Consumer, Queue

from gridbus.routes.model import Route
from gridbus.workers import topology
from gridbus.workers.amqp import (
    AmqpDelivery, BrokerNodes, ConfirmTimeout, DelayEmulation, KeepAlive, NoNodeAnswered, Publisher, fast_path_refusal,
    is_amqp, mask_url,
)
from gridbus.contracts.errors import TransientDeliveryError
from gridbus.contracts.rules import DEFAULT_RULES, Rules
from gridbus.workers.intake import Intake
from gridbus.workers.logging import get_logger
from gridbus.workers.metrics import Meter
from gridbus.workers.parts import DueSchedules, OutcomeLog, Part, RetentionPurge, TraceJournal
from gridbus.workers.pipeline import Pipeline
from gridbus.workers.settlement import Settlement
from gridbus.workers.store import Store

CHINA_TZ = timezone(timedelta(hours=8))
log = get_logger("gridbus.worker")

#: Reconnect back-off: the first wait, the longest, and how long a connection must have served
#: (or settled a message) for the next loss to start again from the first wait. Each wait is
#: drawn between half and all of the back-off (jitter), so workers dropped together spread out.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0
SERVED_S = 30.0


def china_now() -> datetime:
    return datetime.now(CHINA_TZ)


class Worker:
    """Runs the given routes against one broker until ``stop()`` or SIGTERM.

    adapters: a callable ``(publisher_getter) -> {name: adapter}`` called once at start, so AMQP
    adapters can reach the publisher of the current connection (it changes on reconnect).
    source_users: system code -> the RabbitMQ user whose ``user_id`` its routes accept (default: the code).
    rules: the configured business rules every mapping is handed (``contracts.rules``).
    options: settings the mappings read (``MappingContext.options``, ``Settings.mapping_options``).
    batch_size, batch_linger_s: how batches are formed (``Intake``).
    retention_s: processed ids older than this are forgotten, by a purge started every
    purge_interval_s that removes at most purge_chunk_rows rows per loop turn (``RetentionPurge``).
    metrics: tally what is settled for ``/metrics`` (``meter``, a ``workers.metrics.Meter``;
    None when off). alerts: a part told of every settled batch (the dead-letter webhook), or None.
    """

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
        rules: Rules = DEFAULT_RULES,
        options: dict | None = None,
        metrics: bool = False,
        alerts: Part | None = None,
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
        #: subscribed to every route's work queue on the current connection (for /readyz)
        self.consuming = False
        self.store = store
        self.prefetch = prefetch
        self.confirm_timeout_s = confirm_timeout_s
        self.message_deadline_s = message_deadline_s
        self.clock = clock
        self.declare = declare
        self._connected_at: float | None = None
        self._settled_at_connect = 0
        self._next_beat = 0.0
        self._beat_every: float | None = None
        self._consumer_raw = None
        self._consumer_conn = None
        self._publisher: Publisher | None = None
        self._stop = threading.Event()
        self._delays = DelayEmulation(self.routes, self.publisher)  # in-memory broker only
        self.adapters = adapters(self.publisher)
        self.pipeline = Pipeline(store, self.adapters, clock, source_users, rules, options)
        self.intake = Intake(self.pipeline, batch_size=batch_size, batch_linger_s=batch_linger_s, stopping=self._stop.is_set)
        self.outcomes = OutcomeLog()
        self.meter = Meter(name, [r.name for r in self.routes]) if metrics else None
        self.parts: list[Part] = [
            self.outcomes,
            TraceJournal(store.journal, clock),
            DueSchedules(self.routes, store.schedules, self.publisher, clock, schedule_poll_s, meter=self.meter),
            RetentionPurge(store.idempotency, retention_s=retention_s, interval_s=purge_interval_s, chunk_rows=purge_chunk_rows),
        ]
        self.parts += [part for part in (self.meter, alerts) if part is not None]
        self.settlement = Settlement(
            store, self.pipeline, self.publisher, clock, meanwhile=self.intake.work_ahead, parts=self.parts,
            meter=self.meter,
        )

    @property
    def counts(self) -> dict[str, int]:
        """Messages settled so far, by outcome."""
        return self.outcomes.counts

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
                since = self.settlement.busy_since
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
        if self.settlement.busy_since is not None:
            self.settlement.busy_since = time.monotonic()

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
                self._publisher = self._consumer_conn = None
                self.node, self.fast_path, self.consuming = None, False, False
                self.intake.detach()
                for conn in (consumer_conn, publisher_conn):
                    if conn is not None:
                        _close(conn, graceful=not lost)

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
        for two intervals raises ``ConnectionForced``), after ``Intake.fill`` has read the consuming
        connection; the publishing one is read by ``keep_alive``. While a batch or a confirm
        wait keeps the loop away, ``KeepAlive`` sends the heartbeats the broker expects."""
        if self._beat_every is None or self._stop.is_set():
            return  # stopping: the intake has not read the connection, and nothing will wait on it
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
        amqp = is_amqp(consumer_conn)
        self._consumer_conn = consumer_conn if amqp else None
        self._consumer_raw = consumer_conn.connection
        self.intake.attach(consumer_conn, amqp=amqp)
        self.settlement.multiple_ack = amqp
        heartbeat = getattr(self._consumer_raw, "heartbeat", 0) if amqp else 0
        self._beat_every = heartbeat / 4 if heartbeat else None
        consumers = self._consume(channel, amqp)
        self.consuming = True
        self.fast_path = bool(getattr(consumer_conn.connection, "fast_consumers", None))
        log.info(
            "worker.started", routes=[r.name for r in self.routes], broker=mask_url(self.broker_url),
            node=mask_url(self.nodes.url), fast_path=self.fast_path, heartbeat_s=heartbeat,
            **({"fast_path_refused": self.fast_path_refused} if self.fast_path_refused else {}),
        )
        intake = self.intake
        while not self._stop.is_set():
            intake.fill(idle_timeout_s)
            self._keep_alive()
            if intake.buffer:
                self.settlement.run(intake.take())
            elif until is not None and until():
                break
            if not amqp:
                self._delays.move_due(channel)
            for part in self.parts:
                part.on_turn()
        self.consuming = False
        for consumer in consumers:
            try:
                if amqp:
                    channel.basic_cancel(consumer)
                    getattr(consumer_conn.connection, "fast_consumers", {}).pop(consumer, None)
                else:
                    consumer.cancel()
            except Exception:  # noqa: BLE001
                pass
        log.info("worker.stopped", counts=self.counts)

    def _consume(self, channel, amqp: bool) -> list:
        """Subscribe to every route's work queue: on RabbitMQ, py-amqp's deliveries as they come,
        without kombu's ``Message`` around each (see ``AmqpDelivery``), and straight from the
        fast frame handler when it is installed; on the in-memory broker, kombu's consumers."""
        consumers = []
        if amqp:
            channel.auto_decode = False  # bodies stay the bytes sent, whatever content_encoding says
            channel.basic_qos(0, self.prefetch, False)
            fast = getattr(channel.connection, "fast_consumers", None)
            for route in self.routes:
                collect = self.intake.collector(route)
                tag = channel.basic_consume(route.work_queue, callback=lambda m, c=collect: c(AmqpDelivery.of(m, channel)))
                if fast is not None:
                    fast[tag] = collect  # read by amqp.deliveries_frame_handler
                consumers.append(tag)
            return consumers
        for route in self.routes:
            consumer = Consumer(
                channel, queues=[Queue(route.work_queue, no_declare=True)], on_message=self.intake.collector(route),
                prefetch_count=self.prefetch,
            )
            consumer.consume()
            consumers.append(consumer)
        return consumers


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


def _close(conn, *, graceful: bool) -> None:
    """Close a connection: with the AMQP handshake after a clean stop; after a failure by
    dropping the socket (the handshake would wait on a broker that may never answer)."""
    try:
        conn.release() if graceful else conn.collect()
    except Exception:  # noqa: BLE001 - the connection may be dead already
        pass
