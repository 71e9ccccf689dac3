"""The deliveries taken from the consuming connection, and the batches formed of them.

The consumer callbacks only collect (``collector``); ``fill`` reads until a batch is full, the
broker is quiet or the batch's linger is over; ``take`` hands out the next batch. While a batch's
confirms are on their way, ``work_ahead`` reads and decodes what has arrived meanwhile.
"""

from __future__ import annotations

import socket
import time
from typing import Callable

from gridbus.routes.model import Route
from gridbus.workers.pipeline import Delivery, Pipeline


class Intake:
    """batch_size: the most messages in one batch. batch_linger_s: a batch is closed at the latest
    this long after its first message was taken, full or not (see ``fill``)."""

    #: A batch is also closed when no delivery came for this long (seconds).
    QUIET_S = 0.005

    def __init__(self, pipeline: Pipeline, *, batch_size: int, batch_linger_s: float, stopping: Callable[[], bool]):
        self.pipeline = pipeline
        self.batch_size = batch_size
        self.batch_linger_s = batch_linger_s
        self._stopping = stopping
        self.buffer: list[Delivery] = []
        self._conn = None  # the consuming kombu connection
        self._amqp = False  # on RabbitMQ (py-amqp), not the in-memory broker
        self._batch_opened: float | None = None  # when the batch being filled took its first message
        self._ahead_error: BaseException | None = None  # met while working ahead, raised by fill

    def attach(self, conn, *, amqp: bool) -> None:
        """Read from ``conn`` (a kombu connection; ``amqp``: on py-amqp) from now on."""
        self._conn, self._amqp = conn, amqp

    def detach(self) -> None:
        """The connection is gone: deliveries still in hand belong to its closed channel, and
        come again on the next one."""
        self._conn, self._amqp, self._ahead_error = None, False, None
        self.buffer = []

    def collector(self, route: Route) -> Callable:
        """The consumer callback of ``route``: collects each message (a kombu ``Message`` or an
        ``AmqpDelivery``) as a delivery of that route."""

        def collect(message) -> None:
            self.buffer.append(Delivery(route=route, message=message))  # the current buffer: take replaces it

        return collect

    def take(self) -> list[Delivery]:
        """The first ``batch_size`` deliveries taken. More can be waiting: before the loop starts,
        subscribing to one route's queue after another reads the deliveries of those subscribed
        first (up to the prefetch of each); they stay for the next batches, so no batch, the
        first after a start included, is larger than ``batch_size``."""
        batch, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size :]
        if not self.buffer:
            self._batch_opened = None
        return batch

    def fill(self, idle_timeout_s: float) -> None:
        """Read deliveries until the batch is full, the broker is quiet for ``QUIET_S``, or the
        batch's linger is over: ``batch_linger_s`` from its first message (as Kafka's
        ``linger.ms``), so under a steady trickle no message waits for a whole batch to fill.
        With nothing to take, return after ``idle_timeout_s`` (the loop's other work)."""
        if self._ahead_error is not None:
            error, self._ahead_error = self._ahead_error, None
            raise error
        conn, buffer = self._conn, self.buffer
        if not buffer:
            self._batch_opened = None
        idle_deadline = time.monotonic() + idle_timeout_s
        while len(buffer) < self.batch_size and not self._stopping():
            if self._amqp:
                self._read_buffered()  # frames already read are taken at once, linger or not
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
                    self._read_arrived()  # the linger is over, but what has come is taken
                return
            try:
                conn.drain_events(timeout=timeout)
            except socket.timeout:
                if buffer or time.monotonic() >= idle_deadline:
                    return

    def work_ahead(self) -> None:
        """While a batch's confirms are on their way (the broker's round trip, idle time
        otherwise): take the deliveries that have arrived meanwhile, up to a batch, and decode
        them. Decoding is pure; all that reads or writes the store waits for their own batch, after
        this one is settled. A failure of the consuming connection met here is raised by the next
        ``fill``, once this batch is settled, where it would have been met without working ahead."""
        receive = self._receive()
        if receive is None or self._ahead_error is not None:
            return
        buffer, taken, started = self.buffer, len(self.buffer), time.monotonic()
        try:
            while True:
                self._read_buffered()
                if len(buffer) >= self.batch_size or not receive():
                    break
        except Exception as exc:  # noqa: BLE001 - see the docstring
            self._ahead_error = exc
        if buffer and self._batch_opened is None:
            self._batch_opened = started  # the next batch's linger runs from here
        # a redelivered message is decoded only after its start was counted (see Settlement)
        self.pipeline.decode_ahead([d for d in buffer[taken:] if not d.redelivered], {})

    def _receive(self) -> Callable[[], bool] | None:
        """The buffered transport's read of what the socket holds now (None: not on it)."""
        if not self._amqp or self._conn is None:
            return None
        return getattr(self._conn.connection.transport, "receive_ready", None)

    def _read_buffered(self) -> None:
        """Hand py-amqp the frames already read from the socket, straight to its frame handler:
        what ``drain_events`` does for each, without its layers and timeouts (nothing to wait for)."""
        connection = self._conn.connection
        transport = connection.transport
        buffered = getattr(transport, "frame_buffered", None)
        if buffered is None:
            return
        on_frame, read_frame, buffer, batch_size = connection.on_inbound_frame, transport.read_frame, self.buffer, self.batch_size
        while len(buffer) < batch_size and buffered():
            on_frame(read_frame())

    def _read_arrived(self) -> None:
        """Take, up to a batch, what the socket holds now, without waiting for more."""
        receive = self._receive()
        if receive is None:
            return
        while True:
            self._read_buffered()
            if len(self.buffer) >= self.batch_size or not receive():
                return
