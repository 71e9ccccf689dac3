"""The broker's view of connections (rabbitmqctl), and a TCP proxy that can go silent."""

from __future__ import annotations

import json
import select
import socket
import threading


def broker_connections(ctl, vhost: str) -> list[dict]:
    """The connections of ``vhost`` as the broker lists them: ``pid`` (what ``close_connection``
    takes), ``name`` (client and server address), ``connection_name`` (from the client's
    properties), ``timeout`` (the heartbeat the connection negotiated, in seconds) and ``user``.
    ``ctl`` runs rabbitmqctl with its arguments."""
    out = ctl("list_connections", "name", "vhost", "user", "timeout", "client_properties", "--formatter", "json", "-q")
    # The JSON formatter writes pids as #PID<...>, which close_connection does not take.
    pids = dict(reversed(line.split("\t", 1)) for line in ctl("list_connections", "pid", "name", "-q",
                                                              "--no-table-headers").splitlines() if "\t" in line)
    rows = []
    for row in json.loads(out or "[]"):
        if row.get("vhost") != vhost:
            continue
        properties = {p[0]: p[2] for p in row.get("client_properties") or [] if isinstance(p, list) and len(p) == 3}
        rows.append({"pid": pids.get(row["name"]), "name": row["name"], "connection_name": properties.get("connection_name"),
                     "timeout": row.get("timeout"), "user": row.get("user")})
    return rows


def gridbus_connections(ctl, vhost: str, pid: int | None = None) -> list[dict]:
    """The connections gridbus opened in ``vhost`` (by their connection_name), of one process."""
    return [
        c for c in broker_connections(ctl, vhost)
        if (c["connection_name"] or "").startswith("gridbus ")
        and (pid is None or f" pid {pid} " in c["connection_name"])
    ]


class FreezableProxy:
    """Forwards TCP connections from a loopback port to ``upstream``; ``freeze()`` stops
    forwarding in both directions while keeping every socket open: to the client, the broker
    has gone silent, as behind a dead router or a half-open connection. ``sever()`` closes every
    forwarded connection and closes each new one at once, until ``restore()``: to the client,
    the broker is down, while the shared broker runs on."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._peers: dict[socket.socket, socket.socket] = {}
        self._frozen = threading.Event()
        self._severed = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freezable-proxy", daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def sever(self) -> None:
        self._severed.set()

    def restore(self) -> None:
        self._severed.clear()

    def _run(self) -> None:
        while not self._closed.is_set():
            if self._severed.is_set():
                for sock in list(self._peers):
                    self._drop(sock)
            watched = [self._listener] + ([] if self._frozen.is_set() else list(self._peers))
            readable, _, _ = select.select(watched, [], [], 0.05)
            for sock in readable:
                if sock is self._listener:
                    client, _ = self._listener.accept()
                    if self._severed.is_set():
                        client.close()
                        continue
                    server = socket.create_connection(self.upstream, timeout=5)
                    self._peers[client], self._peers[server] = server, client
                    continue
                if self._frozen.is_set() or sock not in self._peers:
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        self._peers[sock].sendall(data)
                        continue
                except OSError:
                    pass
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        peer = self._peers.pop(sock, None)
        if peer is not None:
            self._peers.pop(peer, None)
            peer.close()
        sock.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        for sock in list(self._peers):
            self._drop(sock)
        self._listener.close()
