"""A publisher that knows when the broker took a message.

The worker publishes on a connection of its own: publishing with confirms on the consuming
connection from inside delivery handling can recurse into delivery handling under a backlog;
on a connection of its own the publisher only ever reads confirms.

On RabbitMQ the publisher puts its channel in confirm mode and collects acks, nacks and
returns (mandatory publishes) in batches: ``publish`` returns a ticket at once, ``wait``
blocks until every outstanding ticket is settled. kombu's in-memory transport has no
confirms: a publish there is settled when it returns.
"""

from __future__ import annotations

import socket
import time
from typing import Callable

import amqp
import amqp.exceptions
from kombu import Connection, Producer

from gridbus.contracts.errors import TransientDeliveryError
from gridbus.workers.amqp.connections import is_amqp
from gridbus.workers.amqp.frames import PublishFrames, refuse_oversized_envelope
from gridbus.workers.amqp.template import PublishTemplate


class ConfirmTimeout(TransientDeliveryError):
    kind = "confirm-timeout"


class _Pending:
    """A publish waiting for the broker's confirm."""

    __slots__ = ("exchange", "routing_key", "message_id", "error", "settled")

    def __init__(self, exchange: str, routing_key: str, message_id: str | None):
        self.exchange, self.routing_key, self.message_id = exchange, routing_key, message_id
        self.error: Exception | None = None
        self.settled = False


class Publisher:
    """Publishes on a connection of its own; settles tickets in batches.

    ``publish(...) -> ticket``; ``wait(timeout) -> {ticket: None | error}`` for every ticket
    published since the last wait. A broker nack, an unroutable mandatory message and a
    confirm that does not come in time are all reported as ``TransientDeliveryError``.

    On RabbitMQ, publishes are written to the socket in chunks of about ``write_buffer_bytes``
    (and all that is left when ``wait`` starts), not one socket write per message: the frames
    are the same bytes py-amqp writes (see ``PublishFrames``), only fewer system calls.
    """

    def __init__(
        self, connection: Connection, *, confirm_timeout_s: float = 30.0, write_buffer_bytes: int = 16384,
        fast_path: bool = True,
    ):
        self.connection = connection
        self.confirm_timeout_s = confirm_timeout_s
        self.write_buffer_bytes = write_buffer_bytes
        self.confirms = is_amqp(connection)
        self._pending: dict[int, _Pending] = {}
        self._unsettled = 0
        self._acked_up_to = 0  # every ticket up to this one is settled (multiple acks/nacks)
        self._seq = 0
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._channel = connection.channel()
        heartbeat = getattr(connection.connection, "heartbeat", 0) if self.confirms else 0
        #: how long ``wait`` reads before it checks heartbeats (a quarter interval); None: no heartbeats
        self._beat_s = heartbeat / 4 if heartbeat else None
        #: publishes encoded here and written in batches (None: py-amqp's ``basic_publish`` each)
        self._frames: PublishFrames | None = None
        #: publishes written from frames encoded here (the wiring tests read it)
        self.encoded = 0
        if self.confirms:
            if fast_path:
                # py-amqp drains the socket before every publish when the connection announced
                # connection.blocked; the broker still sends its blocked/unblocked notices, which
                # ``wait`` reads with the confirms, once per batch instead of once per message.
                properties = connection.connection.client_properties
                properties["capabilities"] = {**properties.get("capabilities", {}), "connection.blocked": False}
                self._frames = PublishFrames(self._channel.channel_id)
            self._channel.confirm_select()
            self._channel.events["basic_ack"].add(self._on_ack)
            self._channel.events["basic_nack"].add(self._on_nack)
            self._channel.events["basic_return"].add(self._on_return)
        else:
            self._producer = Producer(self._channel)

    # -- confirm callbacks (py-amqp) ----------------------------------------------------

    def _settle(self, delivery_tag: int, multiple: bool, error: Exception | None) -> None:
        if multiple:
            tags = range(max(self._acked_up_to + 1, delivery_tag - len(self._pending) + 1), delivery_tag + 1)
            self._acked_up_to = max(self._acked_up_to, delivery_tag)
        else:
            tags = (delivery_tag,)
        pending_get = self._pending.get
        for tag in tags:
            pending = pending_get(tag)
            if pending is not None and not pending.settled:
                pending.settled = True
                self._unsettled -= 1
                if error is not None and pending.error is None:
                    pending.error = error

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, None)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple, TransientDeliveryError("the broker refused the message (basic.nack)"))

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        message_id = message.properties.get("message_id")
        for pending in self._pending.values():
            if (
                not pending.settled
                and pending.error is None
                and (pending.exchange, pending.routing_key, pending.message_id) == (exchange, routing_key, message_id)
            ):
                pending.error = TransientDeliveryError(
                    f"unroutable: no queue is bound to exchange {exchange!r} for routing key {routing_key!r}"
                )
                return

    # -- publishing -----------------------------------------------------------------------

    def publish(
        self,
        *,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: dict,
        headers: dict | None = None,
        mandatory: bool = True,
    ) -> int:
        pending = _Pending(exchange, routing_key, properties.get("message_id"))
        props = {k: v for k, v in properties.items() if v is not None}
        props.setdefault("delivery_mode", 2)
        if self.confirms:
            headers = dict(headers or {})
            channel = self._channel
            if channel.connection is None:
                raise amqp.exceptions.RecoverableConnectionError("basic_publish: connection closed")
            frames = None if self._frames is None else self._frames.encode(
                channel.connection.frame_max, exchange, routing_key, mandatory, body, props, headers
            )
            if frames is None:  # what py-amqp writes differently (large bodies) or refuses
                refuse_oversized_envelope(channel.connection.frame_max, exchange, routing_key, props, headers)
            self._seq += 1  # the broker's delivery tag of this publish: only once it is written
            self._pending[self._seq] = pending
            self._unsettled += 1
            if frames is None:
                self._flush()
                message = amqp.Message(body, application_headers=headers, **props)
                channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=mandatory)
            else:
                self._hold(frames)
        else:
            self._seq += 1
            self._pending[self._seq] = pending
            self._producer.publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                headers=dict(headers or {}),
                serializer=None,
                content_type=props.pop("content_type", "application/octet-stream"),
                content_encoding=props.pop("content_encoding", "binary"),
                **props,
            )
            pending.settled = True
        return self._seq

    @staticmethod
    def template(exchange: str, routing_key: str, **parts) -> PublishTemplate:
        """What many publishes to ``exchange`` with ``routing_key`` share (see ``PublishTemplate``)."""
        return PublishTemplate(exchange, routing_key, **parts)

    def publish_as(self, template: PublishTemplate, body: bytes, values: tuple, header_values: tuple = ()) -> int:
        """``publish`` of what ``template`` shares with ``values`` (its variable properties, in
        order) and ``header_values`` (its variable headers) filled in: the same bytes, with only
        the variable parts encoded per message."""
        frames = None
        connection = self._channel.connection if self._frames is not None else None
        if connection is not None:
            properties = template.encode(values, header_values)
            if properties is not None:
                frames = self._frames.frames(
                    connection.frame_max, template.exchange, template.routing_key, template.mandatory, body, properties
                )
        if frames is None:  # what the template leaves to the general path
            props, headers = template.merged(values, header_values)
            return self.publish(
                exchange=template.exchange, routing_key=template.routing_key, body=body, properties=props,
                headers=headers, mandatory=template.mandatory,
            )
        self._seq += 1
        self._pending[self._seq] = _Pending(template.exchange, template.routing_key, template.message_id(values))
        self._unsettled += 1
        self._hold(frames)
        return self._seq

    def _hold(self, frames: bytes) -> None:
        """Keep a publish's frames for the next socket write (at ``write_buffer_bytes``)."""
        self._out.append(frames)
        self._out_bytes += len(frames)
        self.encoded += 1
        if self._out_bytes >= self.write_buffer_bytes:
            self._flush()

    def _flush(self) -> None:
        """Write the publishes held back so far, in one socket write."""
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        count = len(self._out)
        self._out, self._out_bytes = [], 0
        connection = self._channel.connection
        if connection is None:
            raise amqp.exceptions.RecoverableConnectionError("basic_publish: connection closed")
        connection.transport.write(data)
        connection.bytes_sent += count

    def wait(
        self, timeout: float | None = None, meanwhile: Callable[[], None] | None = None
    ) -> dict[int, Exception | None]:
        """Block until every published ticket is settled; returns and forgets them.

        meanwhile: called once, after the held publishes are written and before the first read
        of confirms, when some are still to come: work that fills the broker's round trip.
        """
        self._flush()
        if meanwhile is not None and self._unsettled > 0:
            meanwhile()
        timeout = self.confirm_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        beat = self._beat_s
        while self._unsettled > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for p in self._pending.values():
                    if not p.settled:
                        p.settled = True
                        p.error = ConfirmTimeout(f"no publisher confirm from the broker within {timeout:g} s")
                self._unsettled = 0
                break
            try:
                self.connection.drain_events(timeout=remaining if beat is None else min(remaining, beat))
            except socket.timeout:
                pass
            if beat is not None:
                self._heartbeat_tick()
        settled = {tag: p.error for tag, p in self._pending.items()}
        self._pending.clear()
        self._unsettled = 0
        return settled

    def keep_alive(self) -> None:
        """Read what the broker sent meanwhile (confirms, heartbeats) without waiting for more,
        then check heartbeats: a broker silent for two intervals raises ``ConnectionForced``.
        Called by the worker's loop, since nothing else reads this connection between waits."""
        if self._beat_s is None:
            return
        raw = self._channel.connection
        transport = raw.transport if raw is not None else None
        receive = getattr(transport, "receive_ready", None)
        if receive is not None:
            while True:
                while transport.frame_buffered():
                    raw.on_inbound_frame(transport.read_frame())
                if not receive():
                    break
        self._heartbeat_tick()

    def _heartbeat_tick(self) -> None:
        """py-amqp's check on this connection (not kombu's, which reconnects a dead one first)."""
        raw = self._channel.connection
        if raw is None:
            raise amqp.exceptions.RecoverableConnectionError("heartbeat check: connection closed")
        raw.heartbeat_tick()

    def close(self) -> None:
        try:
            self._flush()
        except Exception:  # noqa: BLE001 - unconfirmed publishes are not settled anyway
            pass
        try:
            self._channel.close()
        except Exception:  # noqa: BLE001 - closing a channel of a dead connection
            pass
