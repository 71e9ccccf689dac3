"""Connections to the broker and a publisher that knows when the broker took a message.

The worker keeps two connections: one consumes, one publishes. Publishing with confirms on
the consuming connection from inside delivery handling can recurse into delivery handling
under a backlog; on a connection of its own the publisher only ever reads confirms.

On RabbitMQ the publisher puts its channel in confirm mode and collects acks, nacks and
returns (mandatory publishes) in batches: ``publish`` returns a ticket at once, ``wait``
blocks until every outstanding ticket is settled. kombu's in-memory transport has no
confirms: a publish there is settled when it returns.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import amqp
from kombu import Connection

from workers.errors import TransientDeliveryError


def is_amqp(connection: Connection) -> bool:
    return connection.transport.driver_type == "amqp"


def connect(url: str, *, connect_timeout: float = 10.0) -> Connection:
    conn = Connection(url, connect_timeout=connect_timeout, heartbeat=0)
    conn.ensure_connection(max_retries=1)
    return conn


class ConfirmTimeout(TransientDeliveryError):
    kind = "confirm-timeout"


@dataclass
class _Pending:
    exchange: str
    routing_key: str
    message_id: str | None
    error: Exception | None = None
    settled: bool = False


class Publisher:
    """Publishes on a connection of its own; settles tickets in batches.

    ``publish(...) -> ticket``; ``wait(timeout) -> {ticket: None | error}`` for every ticket
    published since the last wait. A broker nack, an unroutable mandatory message and a
    confirm that does not come in time are all reported as ``TransientDeliveryError``.
    """

    def __init__(self, connection: Connection, *, confirm_timeout_s: float = 30.0):
        self.connection = connection
        self.confirm_timeout_s = confirm_timeout_s
        self.confirms = is_amqp(connection)
        self._pending: dict[int, _Pending] = {}
        self._seq = 0
        self._channel = connection.channel()
        if self.confirms:
            # py-amqp drains the socket before every publish when the connection announced
            # connection.blocked; the broker still sends its blocked/unblocked notices, which
            # ``wait`` reads with the confirms, once per batch instead of once per message.
            properties = connection.connection.client_properties
            properties["capabilities"] = {**properties.get("capabilities", {}), "connection.blocked": False}
            self._channel.confirm_select()
            self._channel.events["basic_ack"].add(self._on_ack)
            self._channel.events["basic_nack"].add(self._on_nack)
            self._channel.events["basic_return"].add(self._on_return)
        else:
            from kombu import Producer

            self._producer = Producer(self._channel)

    # -- confirm callbacks (py-amqp) ----------------------------------------------------

    def _settle(self, delivery_tag: int, multiple: bool, error: Exception | None) -> None:
        tags = [t for t in self._pending if t <= delivery_tag] if multiple else [delivery_tag]
        for tag in tags:
            pending = self._pending.get(tag)
            if pending is not None and not pending.settled:
                pending.settled = True
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
        self._seq += 1
        pending = _Pending(exchange, routing_key, properties.get("message_id"))
        props = {k: v for k, v in properties.items() if v is not None}
        props.setdefault("delivery_mode", 2)
        if self.confirms:
            self._pending[self._seq] = pending
            message = amqp.Message(body, application_headers=dict(headers or {}), **props)
            self._channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=mandatory)
        else:
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

    def wait(self, timeout: float | None = None) -> dict[int, Exception | None]:
        """Block until every published ticket is settled; returns and forgets them."""
        timeout = self.confirm_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while any(not p.settled for p in self._pending.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                for p in self._pending.values():
                    if not p.settled:
                        p.settled = True
                        p.error = ConfirmTimeout(f"no publisher confirm from the broker within {timeout:g} s")
                break
            try:
                self.connection.drain_events(timeout=remaining)
            except socket.timeout:
                continue
        settled = {tag: p.error for tag, p in self._pending.items()}
        self._pending.clear()
        return settled

    def close(self) -> None:
        try:
            self._channel.close()
        except Exception:  # noqa: BLE001 - closing a channel of a dead connection
            pass
