"""Deliveries read by ``deliveries_frame_handler`` are the ones py-amqp's own frame handler makes."""

from __future__ import annotations

import struct
import warnings

import amqp
import pytest
from amqp import spec
from amqp.exceptions import UnexpectedFrame
from amqp.method_framing import frame_handler
from amqp.serialization import dumps
from hypothesis import given, settings
from hypothesis import strategies as st

from gridbus.workers.amqp import AmqpDelivery, deliveries_frame_handler

FAST, SLOW = "fast-consumer", "slow-consumer"


def deliver_frames(channel: int, consumer_tag: str, delivery_tag: int, redelivered: bool, exchange: str,
                   routing_key: str, properties: dict, body: bytes, cuts: list[int]) -> list[tuple]:
    """The frames the broker sends for one basic.deliver, the body cut at ``cuts``."""
    args = dumps("sLbss", (consumer_tag, delivery_tag, redelivered, exchange, routing_key))
    method = struct.pack(">HH", *spec.Basic.Deliver) + args
    header = struct.pack(">HHQ", 60, 0, len(body)) + amqp.Message(b"", **properties)._serialize_properties()
    bounds = sorted({0, len(body), *(c for c in cuts if 0 < c < len(body))})
    bodies = [(3, channel, body[a:b]) for a, b in zip(bounds, bounds[1:])]
    return [(1, channel, method), (2, channel, header), *bodies]


def connection_with_channels():
    """An unconnected py-amqp connection with channels 1 and 2 whose consumers record what they get."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conn = amqp.Connection("127.0.0.1:1")
    got: list[tuple] = []
    conn.channels = {}
    for channel_id in (1, 2):
        channel = amqp.Channel(conn, channel_id=channel_id, auto_decode=False)
        conn.channels[channel_id] = channel
        for tag in (FAST, SLOW):
            channel.callbacks[tag] = lambda m, c=channel: got.append(record(AmqpDelivery.of(m, c)))
    conn.fast_consumers = {}
    return conn, got


def record(delivery: AmqpDelivery) -> tuple:
    # The one intended difference: py-amqp gives an empty body as '' (its Message's default), we as b''.
    body = b"" if delivery.body == "" else delivery.body
    return (body, delivery.properties, delivery.headers, delivery.delivery_info, delivery.delivery_tag,
            delivery._channel.channel_id)


text = st.text(max_size=20)
PROPERTIES = st.fixed_dictionaries({}, optional={
    "message_id": text, "correlation_id": text, "type": text, "user_id": text, "content_type": text,
    "content_encoding": text, "timestamp": st.integers(0, 2**63), "delivery_mode": st.integers(1, 2),
    "priority": st.integers(0, 9),
    "application_headers": st.dictionaries(text, st.one_of(text, st.integers(-2**31 + 1, 2**31 - 1)), max_size=4),
})
DELIVERY = st.tuples(
    st.sampled_from([1, 2]), st.sampled_from([FAST, SLOW]), st.integers(1, 2**40), st.booleans(), text, text,
    PROPERTIES, st.binary(max_size=300), st.lists(st.integers(1, 299), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(deliveries=st.lists(DELIVERY, min_size=1, max_size=6), interleave=st.randoms(use_true_random=False),
       heartbeats=st.lists(st.integers(0, 40), max_size=3))
def test_deliveries_are_what_py_amqp_delivers(deliveries, interleave, heartbeats):
    # Channels' frames may interleave; each channel's own frames stay in order.
    per_channel = {1: [], 2: []}
    for d in deliveries:
        per_channel[d[0]].extend(deliver_frames(*d))
    frames = []
    while per_channel[1] or per_channel[2]:
        channel = interleave.choice([c for c in (1, 2) if per_channel[c]])
        frames.append(per_channel[channel].pop(0))
    for position in heartbeats:
        frames.insert(min(position, len(frames)), (8, 0, b""))

    reference, expected = connection_with_channels()
    on_frame = frame_handler(reference, reference.on_inbound_method)
    for frame in frames:
        on_frame(frame)

    ours, got = connection_with_channels()
    ours.fast_consumers[FAST] = lambda delivery: got.append(record(delivery))
    on_frame = deliveries_frame_handler(ours, ours.on_inbound_method)
    for frame in frames:
        on_frame(frame)

    assert got == expected
    assert ours.bytes_recv == reference.bytes_recv == len(frames)


def test_a_frame_out_of_order_is_refused_as_py_amqp_refuses_it():
    frames = deliver_frames(1, FAST, 1, False, "e", "k", {"message_id": "m"}, b"body", [])
    out_of_order = [frames[0], frames[2]]  # the body before the content header
    reference, _ = connection_with_channels()
    handler = frame_handler(reference, reference.on_inbound_method)
    with pytest.raises(UnexpectedFrame, match="expecting type: 2"):
        for frame in out_of_order:
            handler(frame)
    ours, _ = connection_with_channels()
    ours.fast_consumers[FAST] = lambda delivery: None
    handler = deliveries_frame_handler(ours, ours.on_inbound_method)
    with pytest.raises(UnexpectedFrame, match="expecting type: 2"):
        for frame in out_of_order:
            handler(frame)


def test_a_delivery_to_a_consumer_cancelled_meanwhile_goes_back_to_the_queue():
    ours, got = connection_with_channels()
    rejected = []
    ours.channels[1].basic_reject = lambda tag, requeue: rejected.append((tag, requeue))
    ours.fast_consumers[FAST] = lambda delivery: got.append(delivery)
    handler = deliveries_frame_handler(ours, ours.on_inbound_method)
    method, header, body = deliver_frames(1, FAST, 7, False, "e", "k", {}, b"x", [])
    handler(method)
    del ours.fast_consumers[FAST]  # cancelled between the method frame and the body
    handler(header)
    handler(body)
    assert got == [] and rejected == [(7, True)]


def test_a_delivery_starting_inside_another_message_is_refused_as_py_amqp_refuses_it():
    slow_method, _, _ = deliver_frames(1, SLOW, 1, False, "e", "k", {}, b"x", [])
    fast_method, _, _ = deliver_frames(1, FAST, 2, False, "e", "k", {}, b"y", [])
    reference, _ = connection_with_channels()
    handler = frame_handler(reference, reference.on_inbound_method)
    handler(slow_method)
    with pytest.raises(UnexpectedFrame, match="expecting type: 2"):
        handler(fast_method)
    ours, _ = connection_with_channels()
    ours.fast_consumers[FAST] = lambda delivery: None
    handler = deliveries_frame_handler(ours, ours.on_inbound_method)
    handler(slow_method)
    with pytest.raises(UnexpectedFrame, match="expecting type: 2"):
        handler(fast_method)


shortstr = st.text(max_size=60).filter(lambda s: len(s.encode("utf-8", "surrogatepass")) <= 255)


@settings(max_examples=200, deadline=None)
@given(consumer_tag=shortstr, delivery_tag=st.integers(0, 2**64 - 1), redelivered=st.booleans(),
       exchange=shortstr, routing_key=shortstr)
def test_deliver_arguments_read_as_py_amqp_reads_them(consumer_tag, delivery_tag, redelivered, exchange, routing_key):
    from amqp.serialization import loads

    from gridbus.workers.amqp.deliveries import _deliver_arguments

    buf = struct.pack(">HH", *spec.Basic.Deliver) + dumps(
        "sLbss", (consumer_tag, delivery_tag, redelivered, exchange, routing_key)
    )
    assert _deliver_arguments(buf) == tuple(loads("sLbss", buf, 4)[0])
