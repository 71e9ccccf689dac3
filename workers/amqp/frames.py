"""The frames of one ``basic.publish`` (method, content header, body) as the bytes py-amqp's
``frame_writer`` writes, so the publisher can write many in one socket write; and the refusal
of a publish whose envelope no frame holds."""

from __future__ import annotations

import struct

import amqp.serialization
from amqp import spec
from amqp.method_framing import FRAME_OVERHEAD

from gridbus.contracts.errors import PermanentError
from gridbus.workers.amqp.encoding import ENCODING_ERRORS, PROPERTY_NAMES, encode_properties
from gridbus.workers.envelope import table_size

_BASIC_CLASS = spec.Basic.Publish[0]
_FRAME_HEAD = struct.Struct(">BHI")
_CONTENT_HEAD = struct.Struct(">BHIHHQ")  # frame head, then class id, weight, body size
_FRAME_END = b"\xce"


class PublishFrames:
    """The frames of one ``basic.publish`` (method, content header, body) as bytes, exactly as
    py-amqp's ``frame_writer`` writes them for a body that fits in one frame.

    ``encode`` returns None for what it leaves to py-amqp: a body that needs several frames,
    a body that is not bytes, property names py-amqp would take differently, and values other
    than plain text, octets, integers and floats (py-amqp then writes, or refuses, them).
    """

    def __init__(self, channel_id: int):
        self.channel_id = channel_id
        self._methods: dict[tuple, tuple[bytes, int]] = {}

    def _method(self, exchange: str, routing_key: str, mandatory: bool) -> tuple[bytes, int]:
        key = (exchange, routing_key, bool(mandatory))
        cached = self._methods.get(key)
        if cached is None:
            args = amqp.serialization.dumps("Bssbb", (0, exchange, routing_key, mandatory, False))
            payload = struct.pack(">HH", *spec.Basic.Publish) + args
            frame = _FRAME_HEAD.pack(1, self.channel_id, len(payload)) + payload + _FRAME_END
            if len(self._methods) >= 1024:
                self._methods.clear()
            cached = self._methods[key] = (frame, len(args))
        return cached

    def encode(
        self, frame_max: int, exchange: str, routing_key: str, mandatory: bool, body: bytes, props: dict, headers: dict
    ) -> bytes | None:
        if type(body) is not bytes or type(exchange) is not str or type(routing_key) is not str:
            return None
        if not PROPERTY_NAMES.issuperset(props):
            return None
        try:
            properties = encode_properties(props, headers)
        except ENCODING_ERRORS:
            return None
        return self.frames(frame_max, exchange, routing_key, mandatory, body, properties)

    def frames(
        self, frame_max: int, exchange: str, routing_key: str, mandatory: bool, body: bytes, properties: bytes
    ) -> bytes | None:
        """The frames of a publish whose property flags and list are already encoded."""
        if type(body) is not bytes or type(exchange) is not str or type(routing_key) is not str:
            return None
        try:
            method, args_len = self._method(exchange, routing_key, mandatory)
        except (IndexError, struct.error, UnicodeError, TypeError, ValueError, OverflowError):
            return None
        size = len(body)
        if args_len + len(properties) + size + FRAME_OVERHEAD > frame_max - 8:
            return None
        header = _CONTENT_HEAD.pack(2, self.channel_id, 12 + len(properties), _BASIC_CLASS, 0, size)
        if not size:
            return b"".join((method, header, properties, _FRAME_END))
        return b"".join(
            (method, header, properties, _FRAME_END, _FRAME_HEAD.pack(3, self.channel_id, size), body, _FRAME_END)
        )


class OversizedEnvelope(PermanentError):
    """A publish whose properties and headers would not fit in one frame: written, it would make
    the broker close the whole connection (FRAME_ERROR), so it is refused before it is written."""

    kind = "envelope-too-large"


def refuse_oversized_envelope(frame_max: int, exchange: str, routing_key: str, props: dict, headers: dict) -> None:
    """Raise ``OversizedEnvelope`` for a publish py-amqp would write with more properties and
    headers than one frame holds (an estimate with room to spare)."""
    size = table_size(headers) + sum(len(str(v).encode("utf-8", "surrogatepass")) + 9 for v in props.values())
    size += len(exchange) + len(routing_key) + 64  # the method frame's arguments, with room to spare
    if size > frame_max - FRAME_OVERHEAD:
        raise OversizedEnvelope(
            f"a publish to exchange {exchange!r} with routing key {routing_key!r} has properties and headers of "
            f"about {size} bytes, more than one frame ({frame_max} bytes) holds; not sent"
        )
