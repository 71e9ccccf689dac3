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

import errno
import re
import select
import socket
import struct
import threading
import time
from typing import Callable

import amqp
import amqp.exceptions
import amqp.serialization
from amqp import spec
from amqp.method_framing import FRAME_OVERHEAD, frame_handler
from amqp.transport import TCPTransport
from kombu import Connection
from kombu.transport import pyamqp as kombu_pyamqp

from gridbus.workers.envelope import table_size
from gridbus.contracts.errors import PermanentError, TransientDeliveryError


#: The py-amqp minor version the fast path (``_BufferedAmqpTransport``, ``deliveries_frame_handler``,
#: ``PublishFrames``) is tested against; pyproject pins ``amqp`` to it. On any other the worker
#: runs on py-amqp's public API alone, as with ``GRIDBUS_AMQP_FAST_PATH=false``.
TESTED_AMQP = (5, 4)


def fast_path_refusal() -> str | None:
    """Why the installed py-amqp may not take the fast path; None when it may."""
    try:
        installed = tuple(int(part) for part in amqp.__version__.split(".")[:2])
    except (AttributeError, ValueError):
        return f"py-amqp's version {getattr(amqp, '__version__', None)!r} is not understood"
    if installed != TESTED_AMQP:
        return f"py-amqp {amqp.__version__} is installed; the fast path is tested on {TESTED_AMQP[0]}.{TESTED_AMQP[1]}"
    return None


def is_amqp(connection: Connection) -> bool:
    return connection.transport.driver_type == "amqp"


def broker_nodes(url: str) -> list[str]:
    """The nodes of a broker setting: one URL, or several separated by ``;`` (kombu's failover
    form, ``amqp://u:p@h1:5672/v;amqp://u:p@h2:5672/v``)."""
    nodes = [part.strip() for part in url.split(";") if part.strip()]
    if not nodes:
        raise ValueError("no broker URL given")
    return nodes


#: ``user:password@`` in a URL; the password runs to the last ``@`` before the host.
_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s;]*):[^\s;]*@", re.IGNORECASE)


def mask_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``: one URL, a node list,
    or an error message that quotes one."""
    return _CREDENTIALS.sub(r"\1:***@", text)


def connect(
    url: str, *, connect_timeout: float = 10.0, heartbeat_s: float = 0.0, name: str | None = None,
    fast_path: bool = True,
) -> Connection:
    """A kombu connection to one node; plain ``amqp://`` connections read the socket in large
    chunks (``_BufferedAmqpTransport``).

    One attempt, without kombu's sleep between retries (``ensure_connection(max_retries=1)``
    waits 2 s and tries again): whoever calls decides when to try again. ``name`` becomes the
    connection's ``connection_name`` (``rabbitmqctl list_connections client_properties``).
    ``heartbeat_s`` is proposed to the broker (the smaller of both wins); whoever reads the
    connection calls ``heartbeat_check`` (see ``Publisher.keep_alive``, ``KeepAlive``).
    ``fast_path=False``: kombu's own py-amqp transport, as it ships.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    buffered = fast_path and scheme in ("amqp", "pyamqp")
    transport = _BufferedAmqpTransport if buffered else None
    options = {"client_properties": {"connection_name": name}} if name else {}
    conn = Connection(
        url, connect_timeout=connect_timeout, heartbeat=heartbeat_s, transport=transport, transport_options=options
    )
    conn.ensure_connection(max_retries=0)
    return conn


class NoNodeAnswered(ConnectionError):
    """Every node of the broker setting refused or failed the connection."""


class BrokerNodes:
    """The broker's nodes, tried in turn.

    ``connect`` tries each node once, starting with the current one, and stays on the first that
    answers (so a worker's consumer and publisher land on the same node). ``failed`` moves on
    after a connection was lost: the next ``connect`` starts with the following node, and a
    node that is down costs one refused connection per round, never a wait.
    """

    def __init__(self, url: str, *, connect_timeout: float = 10.0, heartbeat_s: float = 0.0, fast_path: bool = True):
        self.urls = broker_nodes(url)
        self.fast_path = fast_path
        self.connect_timeout = connect_timeout
        self.heartbeat_s = heartbeat_s
        self.current = 0

    @property
    def url(self) -> str:
        """The current node's URL."""
        return self.urls[self.current]

    def failed(self) -> None:
        self.current = (self.current + 1) % len(self.urls)

    def connect(self, name: str | None = None) -> Connection:
        errors = []
        for _ in range(len(self.urls)):
            try:
                return connect(
                    self.url, connect_timeout=self.connect_timeout, heartbeat_s=self.heartbeat_s, name=name,
                    fast_path=self.fast_path,
                )
            except _CONNECT_ERRORS as exc:
                errors.append(f"{mask_url(self.url)}: {type(exc).__name__}: {mask_url(str(exc))}")
                self.failed()
        raise NoNodeAnswered("no broker node answered: " + "; ".join(errors))


def _connect_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError

    return (OSError, OperationalError, amqp.exceptions.ConnectionError, amqp.exceptions.RecoverableConnectionError)


_CONNECT_ERRORS = _connect_errors()


_HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"


class KeepAlive:
    """Sends AMQP heartbeats for connections whose owner is busy (a long batch, a slow peer),
    from a thread of its own, so the broker does not close them as dead.

    It only writes, and only a heartbeat frame when nothing was written for half the heartbeat
    interval, under the transport's write lock (``_BufferedTCPTransport.write``). Noticing a
    silent broker stays with the thread that reads the connection (``heartbeat_check``).
    Connections without heartbeats or on other transports are left alone.
    """

    def __init__(self, connections, *, name: str = "gridbus-heartbeats"):
        self._transports = []
        for conn in connections:
            raw = getattr(conn, "connection", None) if conn is not None and is_amqp(conn) else None
            heartbeat = getattr(raw, "heartbeat", 0) or 0
            if heartbeat and hasattr(raw.transport, "last_write"):
                self._transports.append((raw.transport, heartbeat / 2))
        self._stop = threading.Event()
        self._thread = None
        if self._transports:
            every = min(half for _, half in self._transports) / 2
            self._thread = threading.Thread(target=self._run, args=(every,), name=name, daemon=True)
            self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            for transport, half in self._transports:
                if time.monotonic() - transport.last_write >= half:
                    try:
                        transport.write(_HEARTBEAT_FRAME)
                    except Exception:  # noqa: BLE001 - a dead connection: its reader finds out
                        pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


class _BufferedTCPTransport(TCPTransport):
    """py-amqp's TCP transport, reading up to 64 KB per ``recv`` instead of exactly each frame's
    header, payload and end byte (three system calls per frame, nine per delivered message).

    Frames are handed out of the buffer as py-amqp's own ``_read`` hands them out; ``_read_buffer``
    (what py-amqp puts back when a read times out mid-frame) stays the unread bytes. When a whole
    frame is buffered, reading it needs no socket timeout: ``having_timeout`` leaves the socket alone.
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
        recv = self._quick_recv
        rbuf = buf[pos:]
        try:
            while len(rbuf) < n:
                try:
                    s = recv(max(n - len(rbuf), self.RECV_BYTES))
                except OSError as exc:
                    if exc.errno in _errnos:
                        if initial and self.raise_on_initial_eintr:
                            raise socket.timeout()
                        continue
                    raise
                if not s:
                    raise OSError("Server unexpectedly closed connection")
                rbuf += s
        except:  # noqa: E722 - as py-amqp: keep what was read, whatever interrupted the read
            self._rbuf, self._rpos = rbuf, 0
            raise
        self._rbuf, self._rpos = rbuf, n
        return rbuf[:n]


_FRAME_HEADER = struct.Struct(">BHI")


class _NoTimeoutChange:
    def __enter__(self):
        return None

    def __exit__(self, *exc_info):
        return False


_NO_TIMEOUT_CHANGE = _NoTimeoutChange()


class _BufferedAmqpConnection(kombu_pyamqp.Connection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: consumer tag -> ``callback(AmqpDelivery)``: deliveries read by ``deliveries_frame_handler``
        self.fast_consumers: dict[str, Callable] = {}
        self.frame_handler_cls = deliveries_frame_handler

    def Transport(self, host, connect_timeout, ssl=False, read_timeout=None, write_timeout=None,
                  socket_settings=None, **kwargs):
        if ssl:
            return super().Transport(host, connect_timeout, ssl, read_timeout, write_timeout, socket_settings, **kwargs)
        return _BufferedTCPTransport(
            host, connect_timeout=connect_timeout, read_timeout=read_timeout, write_timeout=write_timeout,
            socket_settings=socket_settings, **kwargs,
        )


class _BufferedAmqpTransport(kombu_pyamqp.Transport):
    """kombu's py-amqp transport on ``_BufferedTCPTransport`` sockets."""

    Connection = _BufferedAmqpConnection


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
            from kombu import Producer

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
                _refuse_oversized_envelope(channel.connection.frame_max, exchange, routing_key, props, headers)
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
    def template(exchange: str, routing_key: str, **parts) -> "PublishTemplate":
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


class OversizedEnvelope(PermanentError):
    """A publish whose properties and headers would not fit in one frame: written, it would make
    the broker close the whole connection (FRAME_ERROR), so it is refused before it is written."""

    kind = "envelope-too-large"


def _refuse_oversized_envelope(frame_max: int, exchange: str, routing_key: str, props: dict, headers: dict) -> None:
    size = table_size(headers) + sum(len(str(v).encode("utf-8", "surrogatepass")) + 9 for v in props.values())
    size += len(exchange) + len(routing_key) + 64  # the method frame's arguments, with room to spare
    if size > frame_max - FRAME_OVERHEAD:
        raise OversizedEnvelope(
            f"a publish to exchange {exchange!r} with routing key {routing_key!r} has properties and headers of "
            f"about {size} bytes, more than one frame ({frame_max} bytes) holds; not sent"
        )


# -- basic.publish frames -------------------------------------------------------------------

_BASIC_CLASS = spec.Basic.Publish[0]
_FRAME_HEAD = struct.Struct(">BHI")
_CONTENT_HEAD = struct.Struct(">BHIHHQ")  # frame head, then class id, weight, body size
_FRAME_END = b"\xce"
_U16 = struct.Struct(">H").pack
_U32 = struct.Struct(">I").pack
_U64 = struct.Struct(">Q").pack
_LONG_STR_HEAD = struct.Struct(">cI").pack
_I32 = struct.Struct(">ci").pack
_F64 = struct.Struct(">cd").pack
_BYTE = [bytes((n,)) for n in range(256)]
#: Properties a publish may carry besides application_headers, in the order py-amqp writes them.
_PROPERTIES = tuple(amqp.Message.PROPERTIES)
_PROPERTY_NAMES = frozenset(name for name, _ in _PROPERTIES) - {"application_headers"}


class _Unusual(Exception):
    """A value the fast encoding leaves to py-amqp."""


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
        if not _PROPERTY_NAMES.issuperset(props):
            return None
        try:
            properties = _properties(props, headers)
        except (_Unusual, IndexError, struct.error, UnicodeError, TypeError, ValueError, OverflowError):
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


def _short_str(value) -> bytes:
    if type(value) is not str:
        raise _Unusual
    data = value.encode("utf-8", "surrogatepass")
    return _BYTE[len(data)] + data  # IndexError (over 255 bytes) is py-amqp's to refuse


#: Property names present (in the caller's order) -> (property flags, [(name, kind)] in py-amqp's order).
_LAYOUTS: dict[tuple, tuple[bytes, tuple[tuple[str, str], ...]]] = {}


def _layout(names: tuple) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    layout = _LAYOUTS.get(names)
    if layout is None:
        present = {*names, "application_headers"}
        flags, fields = 0, []
        for position, (name, kind) in enumerate(_PROPERTIES):  # 14 properties: one 16-bit flag word
            if name in present:
                flags |= 1 << (15 - position)
                fields.append((name, kind))
        if len(_LAYOUTS) >= 256:
            _LAYOUTS.clear()
        layout = _LAYOUTS[names] = (_U16(flags), tuple(fields))
    return layout


def _properties(props: dict, headers: dict) -> bytes:
    """Property flags and list as ``amqp.Message._serialize_properties`` writes them."""
    flags, fields = _layout(tuple(props))
    parts = [flags]
    append = parts.append
    for name, kind in fields:
        if kind == "s":
            value = props[name]
            if type(value) is not str:
                raise _Unusual
            data = value.encode("utf-8", "surrogatepass")
            append(_BYTE[len(data)])
            append(data)
        elif kind == "F":
            if type(headers) is not dict:
                raise _Unusual
            append(_table(headers))
        elif kind == "o":
            value = props[name]
            if type(value) is not int or not 0 <= value <= 255:
                raise _Unusual
            append(_BYTE[value])
        elif kind == "L":
            value = props[name]
            if type(value) is not int or not 0 <= value < 1 << 64:
                raise _Unusual
            append(_U64(value))
        else:
            raise _Unusual
    return b"".join(parts)


#: Header names already encoded as short strings.
_KEYS: dict[str, bytes] = {}


def _table(table: dict) -> bytes:
    parts = []
    append = parts.append
    for key, value in table.items():
        encoded = _KEYS.get(key)
        if encoded is None:
            encoded = _short_str(key)
            if len(_KEYS) >= 1024:
                _KEYS.clear()
            _KEYS[key] = encoded
        append(encoded)
        kind = type(value)
        if kind is str:
            data = value.encode("utf-8", "surrogatepass")
            append(_LONG_STR_HEAD(b"S", len(data)))
            append(data)
        elif kind is int and -2147483647 <= value <= 2147483647:
            append(_I32(b"I", value))
        elif kind is float:
            append(_F64(b"d", value))
        else:
            raise _Unusual
    data = b"".join(parts)
    return _U32(len(data)) + data


class PublishTemplate:
    """What many publishes share, encoded once: exchange, routing key, mandatory flag, and the
    properties and headers that stay the same. ``encode(values, header_values)`` returns the
    property flags and list with the ``variable`` properties and ``variable_headers`` filled in
    (in the order named), the bytes ``_properties`` writes for the merged dicts; None for a value
    it leaves to the general path (``merged`` gives the dicts for it).

    ``properties`` and ``headers`` are whole examples: their key order is kept, the values of the
    variable ones are ignored.
    """

    __slots__ = ("exchange", "routing_key", "mandatory", "properties", "headers", "variable",
                 "variable_headers", "_plan", "_message_id")

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        *,
        properties: dict,
        headers: dict,
        variable: tuple[str, ...] = (),
        variable_headers: tuple[str, ...] = (),
        mandatory: bool = True,
    ):
        missing = [n for n in variable if n not in properties] + [n for n in variable_headers if n not in headers]
        if missing:
            raise ValueError(f"variable parts not in the example: {', '.join(missing)}")
        self.exchange, self.routing_key, self.mandatory = exchange, routing_key, mandatory
        self.properties = {k: v for k, v in properties.items() if v is not None or k in variable}
        self.properties.setdefault("delivery_mode", 2)
        self.headers = dict(headers)
        self.variable, self.variable_headers = tuple(variable), tuple(variable_headers)
        self._message_id = self.variable.index("message_id") if "message_id" in self.variable else None
        try:
            self._plan = self._compile()
        except (_Unusual, IndexError, struct.error, UnicodeError, TypeError, ValueError, OverflowError):
            self._plan = None  # every publish takes the general path

    def message_id(self, values: tuple) -> str | None:
        return values[self._message_id] if self._message_id is not None else self.properties.get("message_id")

    def merged(self, values: tuple, header_values: tuple) -> tuple[dict, dict]:
        properties = {**self.properties, **dict(zip(self.variable, values))}
        return properties, {**self.headers, **dict(zip(self.variable_headers, header_values))}

    def _compile(self) -> tuple | None:
        """Segments: constant bytes; ("s" | "o" | "L", index) for a variable property; and
        ("F", parts) for a headers table with variable values, parts being bytes or indexes."""
        if not _PROPERTY_NAMES.issuperset(self.properties):
            return None
        flags, fields = _layout(tuple(self.properties))
        plan: list = [flags]
        for name, kind in fields:
            if kind == "F":
                if not any(key in self.variable_headers for key in self.headers):
                    plan.append(_table(self.headers))
                    continue
                parts: list = []
                for key, value in self.headers.items():
                    parts.append(_short_str(key))
                    parts.append(self.variable_headers.index(key) if key in self.variable_headers else _header_value(value))
                plan.append(("F", tuple(_joined(parts))))
            elif name in self.variable:
                if kind not in ("s", "o", "L"):
                    return None
                plan.append((kind, self.variable.index(name)))
            else:
                plan.append(_field(kind, self.properties[name]))
        return tuple(_joined(plan))

    def encode(self, values: tuple, header_values: tuple = ()) -> bytes | None:
        plan = self._plan
        if plan is None:
            return None
        out = []
        append = out.append
        try:
            for part in plan:
                if type(part) is bytes:
                    append(part)
                    continue
                kind = part[0]
                if kind == "s":
                    append(_short_str(values[part[1]]))
                elif kind == "F":
                    table = [_header_value(header_values[p]) if type(p) is int else p for p in part[1]]
                    data = b"".join(table)
                    append(_U32(len(data)))
                    append(data)
                elif kind == "L":
                    value = values[part[1]]
                    if type(value) is not int or not 0 <= value < 1 << 64:
                        return None
                    append(_U64(value))
                else:  # "o"
                    value = values[part[1]]
                    if type(value) is not int or not 0 <= value <= 255:
                        return None
                    append(_BYTE[value])
        except (_Unusual, IndexError, struct.error, UnicodeError):
            return None
        return b"".join(out)


def _header_value(value) -> bytes:
    kind = type(value)
    if kind is str:
        data = value.encode("utf-8", "surrogatepass")
        return _LONG_STR_HEAD(b"S", len(data)) + data
    if kind is int and -2147483647 <= value <= 2147483647:
        return _I32(b"I", value)
    if kind is float:
        return _F64(b"d", value)
    raise _Unusual


def _field(kind: str, value) -> bytes:
    """One property as ``_properties`` writes it (not the headers table)."""
    if kind == "s":
        return _short_str(value)
    if kind == "o" and type(value) is int and 0 <= value <= 255:
        return _BYTE[value]
    if kind == "L" and type(value) is int and 0 <= value < 1 << 64:
        return _U64(value)
    raise _Unusual


def _joined(parts: list) -> list:
    """Adjacent bytes joined into one."""
    out: list = []
    for part in parts:
        if type(part) is bytes and out and type(out[-1]) is bytes:
            out[-1] += part
        else:
            out.append(part)
    return out
