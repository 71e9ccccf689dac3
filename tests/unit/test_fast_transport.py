"""The buffered transport reads the same frames as py-amqp's, however the bytes arrive."""

from __future__ import annotations

import random
import socket
import struct

import pytest
from amqp.transport import TCPTransport
from hypothesis import given, settings
from hypothesis import strategies as st

from gridbus.workers.amqp import BufferedTCPTransport, connect


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def transport_on(cls, sock):
    transport = cls("127.0.0.1:1")
    transport.sock = sock
    transport._setup_transport()
    transport.connected = True
    return transport


def read_all(cls, data: bytes, chunks: list[int], n_frames: int) -> list:
    """Frames read by ``cls`` from ``data`` sent in ``chunks``, with a short timeout between chunks."""
    ours, theirs = socket.socketpair()
    try:
        transport = transport_on(cls, ours)
        frames, position = [], 0
        for size in [*chunks, len(data)]:
            theirs.sendall(data[position:position + size])
            position += size
            while len(frames) < n_frames:
                try:
                    with transport.having_timeout(0.001):
                        frames.append(transport.read_frame())
                except socket.timeout:
                    break
            if position >= len(data):
                break
        return frames
    finally:
        ours.close()
        theirs.close()


#: Frames small and at most one large: above the transport's 64 KB a payload is received straight
#: into place. (The whole stream fits the socket pair's buffer of about 176 KB: it is sent before
#: it is read.)
_small = st.binary(max_size=2000)
_large = st.tuples(st.integers(60000, 140000), st.integers(0, 2**32)).map(lambda n_seed: random.Random(n_seed[1]).randbytes(n_seed[0]))
payloads = st.tuples(st.lists(_small, max_size=5), st.one_of(st.none(), _large), st.integers(0, 5)).map(
    lambda parts: [*parts[0][:parts[2]], *([parts[1]] if parts[1] is not None else []), *parts[0][parts[2]:]] or [b""]
)


@settings(max_examples=60, deadline=None)
@given(payloads=payloads, chunks=st.lists(st.integers(1, 40000), max_size=8))
def test_frames_read_in_any_chunking_are_py_amqps_frames(payloads, chunks):
    data = b"".join(frame(1 + i % 3, i, p) for i, p in enumerate(payloads))
    expected = [(1 + i % 3, i, p) for i, p in enumerate(payloads)]
    got = read_all(BufferedTCPTransport, data, chunks, len(payloads))
    assert [(k, c, bytes(p)) for k, c, p in got] == expected
    assert read_all(TCPTransport, data, chunks, len(payloads)) == got


@pytest.mark.parametrize("cls", [BufferedTCPTransport, TCPTransport])
def test_a_bad_frame_end_is_refused_as_py_amqp_refuses_it(cls):
    from amqp.exceptions import UnexpectedFrame

    ours, theirs = socket.socketpair()
    transport = transport_on(cls, ours)
    theirs.sendall(frame(1, 0, b"abc")[:-1] + b"\x00" + frame(1, 0, b"next"))
    with pytest.raises(UnexpectedFrame, match="frame_end"):
        transport.read_frame()
    ours.close()
    theirs.close()


def test_a_closed_peer_is_reported_as_py_amqp_reports_it():
    ours, theirs = socket.socketpair()
    transport = transport_on(BufferedTCPTransport, ours)
    theirs.sendall(frame(1, 0, b"abc")[:5])
    theirs.close()
    with pytest.raises(OSError, match="Server unexpectedly closed connection"):
        transport.read_frame()
    ours.close()


def test_only_plain_amqp_urls_get_the_buffered_transport():
    conn = connect("memory://")
    try:
        assert conn.transport.driver_type == "memory"
    finally:
        conn.release()


def test_receive_ready_takes_what_the_socket_holds_without_waiting():
    ours, theirs = socket.socketpair()
    transport = transport_on(BufferedTCPTransport, ours)
    try:
        ours.settimeout(None)  # a blocking socket: receive_ready must still not wait
        assert transport.receive_ready() is False
        first, second = frame(1, 1, b"deliver"), frame(3, 1, b"x" * 1000)
        theirs.sendall(first + second[:10])
        assert transport.receive_ready() is True
        assert transport.frame_buffered()
        assert transport.read_frame() == (1, 1, b"deliver")
        assert not transport.frame_buffered()  # the second is cut short: it stays in the buffer
        assert transport.receive_ready() is False
        theirs.sendall(second[10:])
        assert transport.receive_ready() is True
        assert transport.read_frame() == (3, 1, b"x" * 1000)
        theirs.close()
        with pytest.raises(OSError, match="Server unexpectedly closed connection"):
            transport.receive_ready()
    finally:
        ours.close()
