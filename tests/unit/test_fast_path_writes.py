"""The fast path's writes never interleave with py-amqp's or the heartbeat thread's.

Three writers share a connection's socket: the publisher writes the publish frames it encoded
itself (``Publisher`` through ``connection.transport.write``), py-amqp's ``frame_writer`` writes
acks and the publishes the fast path leaves to it, and ``KeepAlive`` writes heartbeats from a
thread of its own. The transport's write lock keeps each write whole. Here the socket sends a few
bytes at a time and yields to the other threads between sends, as a full socket buffer does:
without the lock, or with a writer that goes around it, the frames come out mixed.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import warnings

import amqp
from amqp import spec

from gridbus.workers.amqp import BufferedTCPTransport, KeepAlive, Publisher

FRAME_MAX = 4096
BIG = FRAME_MAX  # a body py-amqp writes as two frames, each with a write of its own
CHUNK = 7  # bytes per send: less than a heartbeat frame
PUBLISHES, ACKS = 300, 200


class TrickleSocket:
    """A socket whose ``sendall`` sends ``CHUNK`` bytes at a time, letting other threads run
    between the sends."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), CHUNK):
            self._sock.sendall(view[start:start + CHUNK])
            time.sleep(0)

    def __getattr__(self, name):
        return getattr(self._sock, name)


class ConfirmChannel(amqp.Channel):
    """py-amqp's channel; ``confirm_select`` is written without waiting for the broker's answer."""

    def confirm_select(self, nowait=False):
        self.send_method(spec.Confirm.Select, "b", (False,))


class KombuConnection:
    """What ``Publisher`` and ``KeepAlive`` use of kombu's connection; ``drain_events`` is the
    broker confirming every publish."""

    def __init__(self, raw: amqp.Connection):
        self.connection = raw
        self.transport = type("KombuTransport", (), {"driver_type": "amqp"})()
        self.confirmed_up_to = 0
        self._channel = None

    def channel(self):
        self._channel = ConfirmChannel(self.connection, channel_id=1, auto_decode=False)
        return self._channel

    def drain_events(self, timeout=None):
        for on_ack in list(self._channel.events["basic_ack"]):
            on_ack(self.confirmed_up_to, True)


def py_amqp_connection(sock: socket.socket) -> amqp.Connection:
    """A py-amqp connection on a ``BufferedTCPTransport`` over ``sock``, wired as
    ``amqp.Connection.connect`` wires it (its frame writer writes through ``transport.write``),
    with the handshake's outcome (frame_max, a heartbeat) filled in."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = amqp.Connection("127.0.0.1:1")
    transport = BufferedTCPTransport("127.0.0.1:1")
    transport.sock = TrickleSocket(sock)
    transport._setup_transport()
    transport.connected = True
    raw.transport = transport
    raw.frame_max = FRAME_MAX
    raw.heartbeat = 0.004  # KeepAlive looks every millisecond, writes after 2 ms without a write
    raw.frame_writer = raw.frame_writer_cls(raw, transport)
    return raw


def read_frames(stream: bytes) -> list[tuple[int, int, bytes]]:
    """The stream cut into frames; fails where a frame is not whole (type, channel, size, payload, 0xCE)."""
    frames, pos = [], 0
    while pos < len(stream):
        assert len(stream) - pos >= 8, f"a frame cut short at byte {pos}"
        kind, channel, size = struct.unpack_from(">BHI", stream, pos)
        assert kind in (1, 2, 3, 8), f"no frame starts at byte {pos}: type {kind}, bytes {stream[pos:pos + 16]!r}"
        assert size <= FRAME_MAX - 8, f"frame at byte {pos} claims {size} bytes"
        end = pos + 7 + size
        assert end < len(stream) and stream[end] == 0xCE, f"the frame at byte {pos} does not end with 0xCE"
        frames.append((kind, channel, stream[pos + 7:end]))
        pos = end + 1
    return frames


def publishes_and_acks(frames):
    """Per channel, the publishes' bodies and the acks' delivery tags, in order; fails where a
    publish's content header and body frames do not follow its method frame on its channel.
    Also the publishes whose frames are not next to each other in the stream as a whole."""
    bodies: dict[int, list[bytes]] = {}
    acks: dict[int, list[int]] = {}
    content: dict[int, list] = {}  # channel -> [body size, chunks, index of the method frame]
    scattered = []
    for index, (kind, channel, payload) in enumerate(frames):
        if kind == 8:
            assert channel == 0 and payload == b"", "a heartbeat frame with a channel or a payload"
            continue
        state = content.get(channel)
        if kind == 1:
            assert state is None, f"a method frame on channel {channel} inside a publish's content"
            method = struct.unpack_from(">HH", payload)
            if method == spec.Basic.Publish:
                content[channel] = [None, [], index]
            elif method == spec.Basic.Ack:
                acks.setdefault(channel, []).append(struct.unpack_from(">Q", payload, 4)[0])
            continue
        assert state is not None, f"a content frame (type {kind}) on channel {channel} without its publish"
        if kind == 2:
            assert state[0] is None, f"a second content header on channel {channel}"
            state[0] = struct.unpack_from(">HHQ", payload)[2]
        else:
            assert state[0] is not None, f"a body frame before its content header on channel {channel}"
            state[1].append(payload)
        if state[0] is not None and sum(map(len, state[1])) >= state[0]:
            body = b"".join(state[1])
            assert len(body) == state[0], f"a body longer than its header says on channel {channel}"
            bodies.setdefault(channel, []).append(body)
            if index - state[2] != len(state[1]) + 1:
                scattered.append(body)
            del content[channel]
    assert not content, f"publishes cut short: {sorted(content)}"
    return bodies, acks, scattered


def test_publish_frames_acks_and_heartbeats_written_from_two_threads_stay_whole():
    ours, theirs = socket.socketpair()
    received = bytearray()
    reader = threading.Thread(target=lambda: _read_until_closed(theirs, received), daemon=True)
    reader.start()
    raw = py_amqp_connection(ours)
    kombu_conn = KombuConnection(raw)
    publisher = Publisher(kombu_conn, write_buffer_bytes=2048)  # the fast path: frames of its own
    acking = amqp.Channel(raw, channel_id=2, auto_decode=False)  # py-amqp's frame writer, as acks use it
    keep_alive = KeepAlive([kombu_conn])
    start = threading.Barrier(2)
    published_bodies = [b'{"n": %d}' % n if n % 50 else b"B%d" % n + b"." * BIG for n in range(PUBLISHES)]
    slow_bodies = [b"S%d" % n + b"." * BIG for n in range(0, ACKS, 25)]

    def publish():
        start.wait()
        for n, body in enumerate(published_bodies):
            publisher.publish(exchange="mkt.in", routing_key="k", body=body,
                              properties={"message_id": f"m-{n}", "content_type": "application/json"})
        kombu_conn.confirmed_up_to = PUBLISHES
        assert set(publisher.wait(timeout=5).values()) == {None}

    def ack_and_publish_through_py_amqp():
        start.wait()
        for tag in range(1, ACKS + 1):
            acking.basic_ack(tag)
            if tag % 25 == 1:
                acking.basic_publish(amqp.Message(slow_bodies[tag // 25]), exchange="e", routing_key="k2")

    errors = []
    threads = [threading.Thread(target=_recording(errors, f)) for f in (publish, ack_and_publish_through_py_amqp)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        keep_alive.stop()
        ours.close()
        reader.join(10)
        theirs.close()
    assert not errors, errors

    frames = read_frames(bytes(received))
    bodies, acks, scattered = publishes_and_acks(frames)
    assert bodies[1] == published_bodies and publisher.encoded == PUBLISHES - len(range(0, PUBLISHES, 50))
    assert bodies[2] == slow_bodies and acks[2] == list(range(1, ACKS + 1))
    # what the publisher wrote from its own frames went out in one write: nothing between its frames
    assert not [body for body in scattered if len(body) < FRAME_MAX], "a fast-path publish was split"
    heartbeats = sum(1 for kind, _, _ in frames if kind == 8)
    assert heartbeats >= 1, "KeepAlive wrote no heartbeat meanwhile: the race was not run"


def _read_until_closed(sock: socket.socket, into: bytearray) -> None:
    while data := sock.recv(65536):
        into += data


def _recording(errors: list, target):
    def run():
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(f"{target.__name__}: {type(exc).__name__}: {exc}")

    return run
