"""Deliveries as the worker reads them: ``AmqpDelivery``, and the frame handler that decodes a
delivery's frames into one without py-amqp's ``Message`` and method dispatch (the fast path)."""

from __future__ import annotations

import struct

import amqp
import amqp.exceptions
import amqp.serialization
from amqp import spec
from amqp.method_framing import frame_handler


class AmqpDelivery:
    """A delivered message, with what the worker reads of kombu's ``Message``: ``body``,
    ``properties``, ``headers``, ``delivery_info``, ``delivery_tag``, ``ack`` and ``reject``
    (kombu wraps each delivery in a ``Message`` of its own first)."""

    __slots__ = ("body", "properties", "headers", "delivery_info", "delivery_tag", "_channel")

    def __init__(self, body: bytes, properties: dict, delivery_info: dict, channel):
        self.body = body
        self.properties = properties
        self.headers = properties.get("application_headers") or {}
        self.delivery_info = delivery_info
        self.delivery_tag = delivery_info["delivery_tag"]
        self._channel = channel

    @classmethod
    def of(cls, message: amqp.Message, channel) -> AmqpDelivery:
        """From a message py-amqp delivered itself."""
        return cls(message.body, message.properties, message.delivery_info, channel)

    def ack(self, multiple: bool = False) -> None:
        self._channel.basic_ack(self.delivery_tag, multiple=multiple)

    def reject(self, requeue: bool = False) -> None:
        self._channel.basic_reject(self.delivery_tag, requeue=requeue)


_DELIVER = struct.pack(">HH", *spec.Basic.Deliver)
_CONTENT_HEADER = struct.Struct(">HxxQ")
_DELIVERY_TAG = struct.Struct(">Q")


def _deliver_arguments(buf) -> tuple[str, int, bool, str, str]:
    """basic.deliver's arguments after its class and method ids: consumer tag, delivery tag,
    redelivered, exchange, routing key; what ``amqp.serialization.loads("sLbss", buf, 4)`` reads."""
    end = 5 + buf[4]
    consumer_tag = buf[5:end].decode("utf-8", "surrogatepass")
    delivery_tag = _DELIVERY_TAG.unpack_from(buf, end)[0]
    redelivered = buf[end + 8] & 1 == 1
    start = end + 10
    end = start + buf[end + 9]
    exchange = buf[start:end].decode("utf-8", "surrogatepass")
    routing_key = buf[end + 1:end + 1 + buf[end]].decode("utf-8", "surrogatepass")
    return consumer_tag, delivery_tag, redelivered, exchange, routing_key


def deliveries_frame_handler(connection, callback):
    """py-amqp's frame handler (``amqp.method_framing.frame_handler``), except for deliveries to
    the consumers in ``connection.fast_consumers``: their method, content header and body frames
    become an ``AmqpDelivery`` handed to the consumer's callback, with py-amqp's own decoding of
    the arguments and properties but without its ``Message``, method dispatch and deliver
    handler in between. Every other frame, and deliveries to other consumers, go to py-amqp's
    handler, which keeps its own state; a frame out of order raises py-amqp's ``UnexpectedFrame``.
    An empty body is ``b""`` (py-amqp's ``Message`` gives ``""``).
    """
    py_amqp = frame_handler(connection, callback)
    fast = connection.fast_consumers
    partial: dict[int, list] = {}  # channel -> [deliver arguments, properties, body size, received, chunks]
    busy: set[int] = set()  # channels where py-amqp's handler is in the middle of a message

    def slow(frame):
        done = py_amqp(frame)
        if frame[0] != 8:
            (busy.discard if done else busy.add)(frame[1])
        return done

    def on_frame(frame):
        frame_type, channel, buf = frame
        state = partial.get(channel)
        if state is None:
            if frame_type != 1 or not fast or buf[:4] != _DELIVER or channel in busy:
                return slow(frame)
            args = _deliver_arguments(buf)
            if args[0] not in fast:
                return slow(frame)
            connection.bytes_recv += 1
            partial[channel] = [args, None, 0, 0, []]
            return False
        if frame_type == 8:
            return slow(frame)
        connection.bytes_recv += 1
        if state[1] is None:
            if frame_type != 2:
                raise amqp.exceptions.UnexpectedFrame(f"Received frame {frame_type} while expecting type: 2")
            class_id, size = _CONTENT_HEADER.unpack_from(buf, 0)
            state[1] = amqp.serialization.PROPERTY_CLASSES[class_id](buf, 12)[0]
            state[2] = size
            if size:
                return False
            body = b""
        else:
            if frame_type != 3:
                raise amqp.exceptions.UnexpectedFrame(f"Received frame {frame_type} while expecting type: 3")
            state[3] += len(buf)
            state[4].append(buf)
            if state[3] < state[2]:
                return False
            chunks = state[4]
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        del partial[channel]
        if connection.channels is None:
            raise amqp.exceptions.RecoverableConnectionError("Connection already closed")
        target = connection.channels[channel]
        consumer_tag, delivery_tag, redelivered, exchange, routing_key = state[0]
        if target.is_closing:
            return True  # as py-amqp: a closing channel ignores deliveries (the broker keeps them)
        deliver = fast.get(consumer_tag)
        if deliver is None:  # cancelled meanwhile
            target.basic_reject(delivery_tag, requeue=True)
            return True
        info = {"consumer_tag": consumer_tag, "delivery_tag": delivery_tag, "redelivered": redelivered,
                "exchange": exchange, "routing_key": routing_key}
        deliver(AmqpDelivery(body, state[1], info, target))
        return True

    return on_frame
