"""The publisher's frames are the bytes py-amqp writes for the same publish."""

from __future__ import annotations

import amqp
import pytest
from amqp.method_framing import frame_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from gridbus.workers.amqp import PublishFrames

FRAME_MAX = 131072


class _Recorder:
    def __init__(self):
        self.written = []

    def write(self, data):
        self.written.append(bytes(data))


class _Connection:
    frame_max = FRAME_MAX
    bytes_sent = 0


def py_amqp_bytes(channel_id, exchange, routing_key, mandatory, body, props, headers) -> bytes:
    """What py-amqp's channel.basic_publish writes to the socket for this publish."""
    transport = _Recorder()
    write = frame_writer(_Connection(), transport)
    message = amqp.Message(body, application_headers=headers, **props)
    args = amqp.serialization.dumps("Bssbb", (0, exchange, routing_key, mandatory, False))
    write(1, channel_id, (60, 40), args, message)
    return b"".join(transport.written)


ROUTE_PROPS = {
    "message_id": "4f1c2a7e-6a55-5d5c-9d0b-1f0e2b3c4d5e",
    "correlation_id": "HV2026110300017",
    "type": "BlackMapNotice",
    "content_type": "application/json",
    "timestamp": 1796720400,
    "app_id": "gridbus",
    "delivery_mode": 2,
}
ROUTE_HEADERS = {"x-gridbus-route": "pms.black-map-published", "x-gridbus-source-message-id": "src-1"}


@pytest.mark.parametrize("body", [b"", b"{}", "黑图".encode() * 300, b"x" * (FRAME_MAX - 400)])
@pytest.mark.parametrize("mandatory", [True, False])
def test_route_outputs_are_written_as_py_amqp_writes_them(body, mandatory):
    frames = PublishFrames(3).encode(FRAME_MAX, "mkt.in", "black_map_notice", mandatory, body, ROUTE_PROPS, ROUTE_HEADERS)
    assert frames == py_amqp_bytes(3, "mkt.in", "black_map_notice", mandatory, body, ROUTE_PROPS, ROUTE_HEADERS)


def test_retry_and_dead_letter_headers_are_written_as_py_amqp_writes_them():
    headers = {"x-gridbus-attempt": 2, "x-gridbus-due-at": 1796720400.25, "x-gridbus-error-message": "无法 <&>",
               "x-gridbus-big": -2147483647, "x-gridbus-empty": ""}
    props = {"message_id": "m", "user_id": "pms", "expiration": "", "priority": 0, "delivery_mode": 2,
             "content_encoding": "utf-8", "reply_to": "r", "cluster_id": "c"}
    frames = PublishFrames(1).encode(FRAME_MAX, "", "gridbus.r.delay.5s", True, b"<x/>", props, headers)
    assert frames == py_amqp_bytes(1, "", "gridbus.r.delay.5s", True, b"<x/>", props, headers)


@pytest.mark.parametrize(
    "body, props, headers",
    [
        (b"x" * FRAME_MAX, {}, {}),  # several body frames: py-amqp's own way
        ("text", {}, {}),  # str body: py-amqp encodes it and sets content_encoding
        (b"x", {"timestamp": 1.5}, {}),
        (b"x", {"delivery_mode": True}, {}),
        (b"x", {"message_id": "m" * 256}, {}),
        (b"x", {"message_id": 7}, {}),
        (b"x", {"application_headers": {}}, {}),
        (b"x", {"frame_method": 1}, {}),
        (b"x", {}, {"nested": {"a": 1}}),
        (b"x", {}, {"big": 2**40}),
        (b"x", {}, {"flag": True}),
        (b"x", {}, {"k" * 256: "v"}),
        (b"x", {}, {"none": None}),
    ],
)
def test_anything_unusual_is_left_to_py_amqp(body, props, headers):
    assert PublishFrames(1).encode(FRAME_MAX, "e", "k", True, body, props, headers) is None


text = st.text(max_size=40)
header_values = st.one_of(text, st.integers(-2147483647, 2147483647), st.floats(allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(
    exchange=st.text(max_size=20),
    routing_key=st.text(max_size=60),
    body=st.binary(max_size=3000),
    props=st.fixed_dictionaries(
        {},
        optional={
            "message_id": text, "correlation_id": text, "type": text, "content_type": text, "app_id": text,
            "user_id": text, "content_encoding": text, "expiration": text, "reply_to": text,
            "timestamp": st.integers(0, 2**64 - 1), "delivery_mode": st.integers(0, 255),
            "priority": st.integers(0, 255),
        },
    ),
    headers=st.dictionaries(text, header_values, max_size=6),
    mandatory=st.booleans(),
    channel_id=st.integers(1, 65535),
)
def test_any_plain_publish_is_written_as_py_amqp_writes_it(exchange, routing_key, body, props, headers, mandatory, channel_id):
    frames = PublishFrames(channel_id).encode(FRAME_MAX, exchange, routing_key, mandatory, body, props, headers)
    assert frames == py_amqp_bytes(channel_id, exchange, routing_key, mandatory, body, props, headers)


# -- the publisher's batching, against a hand-written fake connection -----------------------------


class _FakeAmqpConnection:
    """py-amqp's side of the connection: frame_max, a transport that records writes."""

    frame_max = FRAME_MAX

    def __init__(self):
        self.transport = _Recorder()
        self.bytes_sent = 0
        self.client_properties = {"capabilities": {}}


class _FakeChannel:
    channel_id = 1

    def __init__(self, connection):
        self.connection = connection
        self.events = {"basic_ack": set(), "basic_nack": set(), "basic_return": set()}
        self.slow_publishes = []

    def confirm_select(self):
        pass

    def basic_publish(self, message, exchange, routing_key, mandatory):
        self.slow_publishes.append((message, exchange, routing_key, mandatory))

    def close(self):
        pass


class _FakeKombuConnection:
    """What the publisher uses of kombu's Connection; ``drain_events`` replays scripted broker answers."""

    def __init__(self):
        self.connection = _FakeAmqpConnection()
        self.transport = type("T", (), {"driver_type": "amqp"})()
        self.answers: list[tuple[str, tuple]] = []
        self._channel = None

    def channel(self):
        self._channel = _FakeChannel(self.connection)
        return self._channel

    def drain_events(self, timeout=None):
        if not self.answers:
            import socket

            raise socket.timeout()
        event, args = self.answers.pop(0)
        for callback in list(self._channel.events[event]):
            callback(*args)


def _publish(publisher, n, **kwargs):
    return [
        publisher.publish(exchange="mkt.in", routing_key="k", body=b"{}", properties=dict(ROUTE_PROPS), headers=ROUTE_HEADERS, **kwargs)
        for _ in range(n)
    ]


def test_publishes_are_written_in_chunks_and_settled_by_multiple_acks():
    from gridbus.workers.amqp import Publisher

    conn = _FakeKombuConnection()
    publisher = Publisher(conn, write_buffer_bytes=1)  # every publish written at once
    tickets = _publish(publisher, 3)
    assert len(conn.connection.transport.written) == 3
    publisher.write_buffer_bytes = 10**9
    tickets += _publish(publisher, 3)
    assert len(conn.connection.transport.written) == 3  # held back until wait()
    conn.answers = [("basic_ack", (2, True)), ("basic_nack", (4, False)), ("basic_ack", (6, True))]
    settled = publisher.wait(timeout=1)
    assert len(conn.connection.transport.written) == 4
    one = py_amqp_bytes(1, "mkt.in", "k", True, b"{}", ROUTE_PROPS, ROUTE_HEADERS)
    assert b"".join(conn.connection.transport.written) == one * 6
    assert [settled[t] is None for t in tickets] == [True, True, True, False, True, True]
    assert "basic.nack" in str(settled[tickets[3]])


def test_a_missing_confirm_times_out_and_the_next_batch_starts_clean():
    from gridbus.workers.amqp import ConfirmTimeout, Publisher

    conn = _FakeKombuConnection()
    publisher = Publisher(conn)
    first = _publish(publisher, 2)
    conn.answers = [("basic_ack", (1, False))]
    settled = publisher.wait(timeout=0.05)
    assert settled[first[0]] is None and isinstance(settled[first[1]], ConfirmTimeout)
    second = _publish(publisher, 2)
    conn.answers = [("basic_ack", (4, True))]
    assert publisher.wait(timeout=1) == {second[0]: None, second[1]: None}


def test_unroutable_and_unusual_publishes():
    from gridbus.workers.amqp import Publisher

    conn = _FakeKombuConnection()
    publisher = Publisher(conn, write_buffer_bytes=10**9)
    plain = _publish(publisher, 1)[0]
    unusual = publisher.publish(exchange="e", routing_key="k", body=b"x", properties={"message_id": "m"},
                                headers={"nested": {"a": 1}})
    # the held-back publish is written before py-amqp writes the unusual one
    assert len(conn.connection.transport.written) == 1
    assert conn._channel.slow_publishes[0][0].properties["application_headers"] == {"nested": {"a": 1}}
    returned = amqp.Message(b"x", message_id="m")
    conn.answers = [("basic_return", (None, "e", "k", returned)), ("basic_ack", (2, True))]
    settled = publisher.wait(timeout=1)
    assert settled[plain] is None and "unroutable" in str(settled[unusual])


# -- templates: what many publishes share, encoded once -------------------------------------------

PLAIN_PROPERTY_VALUES = {
    "message_id": text, "correlation_id": text, "type": text, "content_type": text, "app_id": text,
    "user_id": text, "content_encoding": text, "expiration": text, "reply_to": text,
    "timestamp": st.integers(0, 2**64 - 1), "delivery_mode": st.integers(0, 255), "priority": st.integers(0, 255),
}
UNUSUAL_VALUES = st.one_of(st.none(), st.text(min_size=256, max_size=300), st.floats(), st.integers(2**64, 2**65))


@st.composite
def templated_publishes(draw):
    """A template from example dicts, and the values of one publish: plain, or now and then unusual."""
    props = draw(st.fixed_dictionaries({}, optional=PLAIN_PROPERTY_VALUES))
    headers = draw(st.dictionaries(text, header_values, max_size=5))
    variable = tuple(draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else ())
    variable_headers = tuple(draw(st.lists(st.sampled_from(sorted(headers)), unique=True)) if headers else ())
    unusual = draw(st.booleans()) and (variable or variable_headers)
    values = tuple(draw(PLAIN_PROPERTY_VALUES[name]) for name in variable)
    header_values_ = tuple(draw(header_values) for _ in variable_headers)
    if unusual:
        position = draw(st.integers(0, len(variable) + len(variable_headers) - 1))
        bad = draw(UNUSUAL_VALUES if position < len(variable) else st.one_of(st.none(), st.just({"a": 1}), st.just(2**40)))
        if position < len(variable):
            values = values[:position] + (bad,) + values[position + 1:]
        else:
            position -= len(variable)
            header_values_ = header_values_[:position] + (bad,) + header_values_[position + 1:]
    return props, headers, variable, variable_headers, values, header_values_, bool(unusual)


@settings(max_examples=400, deadline=None)
@given(publish=templated_publishes(), body=st.binary(max_size=2000), mandatory=st.booleans(),
       routing_key=st.text(max_size=60))
def test_a_filled_in_template_is_written_as_py_amqp_writes_the_merged_publish(publish, body, mandatory, routing_key):
    from gridbus.workers.amqp import PublishTemplate

    props, headers, variable, variable_headers, values, hvalues, unusual = publish
    template = PublishTemplate("mkt.in", routing_key, properties=props, headers=headers, variable=variable,
                               variable_headers=variable_headers, mandatory=mandatory)
    encoded = template.encode(values, hvalues)
    if unusual:
        assert encoded is None  # left to the general path, which writes it as py-amqp does, or refuses it
        return
    merged_props, merged_headers = template.merged(values, hvalues)
    frames = PublishFrames(7).frames(FRAME_MAX, "mkt.in", routing_key, mandatory, body, encoded)
    assert frames == py_amqp_bytes(7, "mkt.in", routing_key, mandatory, body, merged_props, merged_headers)


def test_publishing_as_a_template_writes_and_settles_what_publish_does():
    from gridbus.workers.amqp import Publisher, PublishTemplate

    template = PublishTemplate(
        "mkt.in", "k", properties=dict(ROUTE_PROPS), headers=dict(ROUTE_HEADERS),
        variable=("message_id", "timestamp"), variable_headers=("x-gridbus-source-message-id",),
    )
    conn = _FakeKombuConnection()
    publisher = Publisher(conn, write_buffer_bytes=10**9)
    tickets = [publisher.publish_as(template, b"{}", (f"m-{i}", 1796720400 + i), (f"src-{i}",)) for i in range(3)]
    # a value the template leaves to the general path: py-amqp writes it
    tickets.append(publisher.publish_as(template, b"{}", ("m-3", 1796720403), ({"nested": 1},)))
    conn.answers = [("basic_ack", (4, True))]
    assert publisher.wait(timeout=1) == dict.fromkeys(tickets)
    expected = b"".join(
        py_amqp_bytes(1, "mkt.in", "k", True, b"{}", {**ROUTE_PROPS, "message_id": f"m-{i}", "timestamp": 1796720400 + i},
                      {**ROUTE_HEADERS, "x-gridbus-source-message-id": f"src-{i}"})
        for i in range(3)
    )
    assert b"".join(conn.connection.transport.written) == expected
    (message, exchange, routing_key, mandatory), = conn._channel.slow_publishes
    assert (exchange, routing_key, mandatory) == ("mkt.in", "k", True)
    assert message.properties["message_id"] == "m-3"
    assert message.properties["application_headers"]["x-gridbus-source-message-id"] == {"nested": 1}


def test_a_template_needs_its_variable_parts_in_the_example():
    from gridbus.workers.amqp import PublishTemplate

    with pytest.raises(ValueError, match="message_id"):
        PublishTemplate("e", "k", properties={}, headers={}, variable=("message_id",))
