"""Connections to the broker's nodes: which py-amqp the fast path may run on, one connection to
one node, the nodes tried in turn, and the heartbeats a busy owner cannot send itself.

The worker keeps two connections: one consumes, one publishes (see ``Publisher``).
"""

from __future__ import annotations

import re
import threading
import time

import amqp
import amqp.exceptions
from kombu import Connection
from kombu.exceptions import OperationalError

from gridbus.workers.amqp.deliveries import deliveries_frame_handler
from gridbus.workers.amqp.transport import BufferedAmqpTransport

#: The py-amqp minor version the fast path (``BufferedAmqpTransport``, ``deliveries_frame_handler``,
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
    """A kombu connection to one node. On the fast path, a plain ``amqp://`` connection reads
    the socket in large chunks (``BufferedAmqpTransport``) and its frames go to
    ``deliveries_frame_handler``: py-amqp's ``Connection`` takes it as its ``frame_handler``
    argument, which kombu passes on from ``transport_options``.

    One attempt, without kombu's sleep between retries (``ensure_connection(max_retries=1)``
    waits 2 s and tries again): whoever calls decides when to try again. ``name`` becomes the
    connection's ``connection_name`` (``rabbitmqctl list_connections client_properties``).
    ``heartbeat_s`` is proposed to the broker (the smaller of both wins); whoever reads the
    connection calls ``heartbeat_check`` (see ``Publisher.keep_alive``, ``KeepAlive``).
    ``fast_path=False``, and ``amqps://``: kombu's own py-amqp transport, as it ships.
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    buffered = fast_path and scheme in ("amqp", "pyamqp")
    options: dict = {"client_properties": {"connection_name": name}} if name else {}
    if buffered:
        options["frame_handler"] = deliveries_frame_handler
    conn = Connection(
        url, connect_timeout=connect_timeout, heartbeat=heartbeat_s,
        transport=BufferedAmqpTransport if buffered else None, transport_options=options,
    )
    conn.ensure_connection(max_retries=0)
    return conn


class NoNodeAnswered(ConnectionError):
    """Every node of the broker setting refused or failed the connection."""


_CONNECT_ERRORS = (OSError, OperationalError, amqp.exceptions.ConnectionError,
                   amqp.exceptions.RecoverableConnectionError)


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


_HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"


class KeepAlive:
    """Sends AMQP heartbeats for connections whose owner is busy (a long batch, a slow peer),
    from a thread of its own, so the broker does not close them as dead.

    It only writes, and only a heartbeat frame when nothing was written for half the heartbeat
    interval, under the transport's write lock (``BufferedTCPTransport.write``). Noticing a
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
