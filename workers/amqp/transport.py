"""The socket below py-amqp on the fast path: the TCP transport reads in large chunks and writes
one frame sequence at a time, and kombu's py-amqp transport is given connections that use it.

Everything here subclasses py-amqp's and kombu's transport classes (``TCPTransport``: ``_read``,
``_read_buffer``, ``_quick_recv``, ``read_frame``, ``having_timeout``): the py-amqp minor
version it is tested on is ``TESTED_AMQP``.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time
from typing import Callable

from amqp.transport import TCPTransport
from kombu.transport import pyamqp as kombu_pyamqp

_FRAME_HEADER = struct.Struct(">BHI")


class BufferedTCPTransport(TCPTransport):
    """py-amqp's TCP transport, reading up to 64 KB per ``recv`` instead of exactly each frame's
    header, payload and end byte (three system calls per frame, nine per delivered message).

    Frames are handed out of the buffer as py-amqp's own ``_read`` hands them out; ``_read_buffer``
    (what py-amqp puts back when a read times out mid-frame) stays the unread bytes. When a whole
    frame is buffered, reading it needs no socket timeout: ``having_timeout`` leaves the socket alone.

    Writes take a lock: py-amqp's frame writer and the publisher's frames are written by the
    connection's owner, heartbeats by ``KeepAlive`` from a thread of its own, and a socket
    write may go out in several sends.
    """

    RECV_BYTES = 65536

    def _setup_transport(self):
        super()._setup_transport()
        self._rbuf, self._rpos = b"", 0
        self._write_lock = threading.Lock()
        self.last_write = time.monotonic()

    def write(self, s):
        """py-amqp's write, one at a time: ``KeepAlive`` writes heartbeats from its own thread."""
        with self._write_lock:
            super().write(s)
            self.last_write = time.monotonic()

    @property
    def _read_buffer(self) -> bytes:
        return self._rbuf[self._rpos:] if getattr(self, "_rbuf", None) else b""

    @_read_buffer.setter
    def _read_buffer(self, value: bytes) -> None:
        self._rbuf, self._rpos = bytes(value), 0

    def frame_buffered(self) -> bool:
        """A whole frame is in the buffer: ``read_frame`` returns it without touching the socket."""
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos < 7:
            return False
        size = int.from_bytes(buf[pos + 3:pos + 7], "big")
        return len(buf) - pos >= 8 + size

    def receive_ready(self) -> bool:
        """Add to the buffer what the socket holds now, without waiting for more; False when it
        holds nothing. Whole frames are then ``frame_buffered``; a frame cut short stays in the
        buffer for the next read to complete."""
        sock = self.sock
        if not select.select((sock,), (), (), 0)[0]:
            return False
        data = sock.recv(self.RECV_BYTES)  # readable: returns at once
        if not data:
            raise OSError("Server unexpectedly closed connection")
        buf, pos = self._rbuf, self._rpos
        self._rbuf, self._rpos = (buf[pos:] + data if pos < len(buf) else data), 0
        return True

    def having_timeout(self, timeout):
        if timeout is not None and self.frame_buffered():
            return _NO_TIMEOUT_CHANGE
        return super().having_timeout(timeout)

    def read_frame(self, unpack=struct.unpack):
        """A frame wholly in the buffer is cut out of it in one go (py-amqp reads its header,
        payload and end byte one by one); anything else, a bad end byte included, is py-amqp's."""
        buf, pos = self._rbuf, self._rpos
        if len(buf) - pos >= 8:
            frame_type, channel, size = _FRAME_HEADER.unpack_from(buf, pos)
            end = pos + 7 + size
            if end < len(buf) and buf[end] == 0xCE:
                self._rpos = end + 1
                return frame_type, channel, buf[pos + 7:end]
        return super().read_frame(unpack)

    def _read(self, n, initial=False, _errnos=(errno.EAGAIN, errno.EINTR)):
        buf, pos = self._rbuf, self._rpos
        end = pos + n
        if end <= len(buf):
            self._rpos = end
            return buf[pos:end]
        if n >= self.RECV_BYTES:  # a large frame's payload (a readings part is 4 MB): read into place
            return self._read_into(n, initial, _errnos)
        recv = self._quick_recv
        rbuf = buf[pos:]
        try:
            while len(rbuf) < n:
                rbuf += self._received(lambda: recv(max(n - len(rbuf), self.RECV_BYTES)), initial, _errnos)
        except:  # noqa: E722 - as py-amqp: keep what was read, whatever interrupted the read
            self._rbuf, self._rpos = rbuf, 0
            raise
        self._rbuf, self._rpos = rbuf, n
        return rbuf[:n]

    def _read_into(self, n, initial, _errnos):
        """``_read`` of ``n`` bytes, the buffered ones first and the rest received straight into
        one buffer of ``n`` bytes: growing a bytes object by each ``recv`` copied a frame's
        payload again and again. Reads nothing beyond the ``n`` bytes."""
        buf, pos = self._rbuf, self._rpos
        out = bytearray(n)
        view = memoryview(out)
        got = len(buf) - pos
        view[:got] = memoryview(buf)[pos:]
        recv_into = self.sock.recv_into
        try:
            while got < n:
                got += self._received(lambda: recv_into(view[got:], n - got), initial, _errnos)
        except:  # noqa: E722 - as py-amqp: keep what was read, whatever interrupted the read
            self._rbuf, self._rpos = bytes(view[:got]), 0
            raise
        self._rbuf, self._rpos = b"", 0
        return bytes(out)

    def _received(self, receive: Callable, initial: bool, _errnos):
        """What one ``receive()`` returns, retried as py-amqp retries a read: again on EAGAIN and
        EINTR (a timeout instead on the first read, with ``raise_on_initial_eintr``); nothing
        received is a closed connection."""
        while True:
            try:
                received = receive()
            except OSError as exc:
                if exc.errno in _errnos:
                    if initial and self.raise_on_initial_eintr:
                        raise socket.timeout()
                    continue
                raise
            if not received:
                raise OSError("Server unexpectedly closed connection")
            return received


class _NoTimeoutChange:
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


_NO_TIMEOUT_CHANGE = _NoTimeoutChange()


class BufferedAmqpConnection(kombu_pyamqp.Connection):
    """kombu's py-amqp connection on a ``BufferedTCPTransport`` (``amqps://`` keeps py-amqp's),
    with the consumers whose deliveries ``deliveries_frame_handler`` decodes itself; ``connect``
    passes that frame handler to py-amqp's ``Connection`` (its ``frame_handler`` argument)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: consumer tag -> ``callback(AmqpDelivery)``: deliveries read by ``deliveries_frame_handler``
        self.fast_consumers: dict[str, Callable] = {}

    def Transport(self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None,
                  socket_settings=None, **kwargs):
        if ssl:
            return super().Transport(host, connect_timeout, ssl, read_timeout, write_timeout, socket_settings, **kwargs)
        return BufferedTCPTransport(
            host, connect_timeout=connect_timeout, read_timeout=read_timeout, write_timeout=write_timeout,
            socket_settings=socket_settings, **kwargs,
        )


class BufferedAmqpTransport(kombu_pyamqp.Transport):
    """kombu's py-amqp transport on ``BufferedTCPTransport`` sockets."""

    Connection = BufferedAmqpConnection
