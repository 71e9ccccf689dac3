"""``/metrics``, ``/healthz`` and ``/readyz`` of a worker process, on one port, from one small thread.

- ``/healthz``: the process is alive (this thread answers): 200 always. A supervisor restarts
  the worker when it stops answering.
- ``/readyz``: 200 when every lane is ready, else 503; the body says which check failed. A lane
  is ready when it is connected to a broker node, subscribed to every route's work queue, its
  store answers (``Database.ping``, at most once every ``STORE_CHECK_S``), and its batch in
  hand (if any) is not past the lane's deadline (the watchdog exits at that point).
- ``/metrics``: prometheus-client's exposition of the lanes' meters (``workers.metrics``), of
  the dead-letter archive in their store, and of the readiness above, as ``gridbus_ready`` and
  ``gridbus_consuming``.

The server is the standard library's WSGI server, a thread per request; nothing here runs in
the worker's loop: the checks read what the loop already keeps (``Worker.consuming``,
``Settlement.busy_since``).
"""

from __future__ import annotations

import json
import socketserver
import threading
import time
from dataclasses import asdict, dataclass
from typing import Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from gridbus.workers.logging import get_logger
from gridbus.workers.metrics import registry_of
from gridbus.workers.runtime import Worker

log = get_logger("gridbus.probes")

#: Least time between two store checks of one lane, in seconds: probes every second cost one
#: trivial query every few seconds.
STORE_CHECK_S = 5.0
#: Longest wait for the store's connection while the lane uses it, in seconds; a store in use is
#: taken as reachable.
STORE_WAIT_S = 1.0


@dataclass(frozen=True)
class LaneReadiness:
    broker: bool  # connected to a broker node
    consuming: bool  # subscribed to every route's work queue
    store: bool  # the store answered its last check
    batch: bool  # no batch in hand past the lane's deadline

    @property
    def ready(self) -> bool:
        return self.broker and self.consuming and self.store and self.batch


class Probes:
    """The checks and the WSGI application of a process's lanes (``{lane name: Worker}``)."""

    def __init__(self, workers: dict[str, Worker]):
        self.workers = dict(workers)
        self._store_checks: dict[int, tuple[float, bool]] = {}  # id(database) -> (checked at, answered)
        self._lock = threading.Lock()
        first = next(iter(self.workers.values()))  # the lanes' stores are one database
        self.registry = registry_of(
            [w.meter for w in self.workers.values() if w.meter is not None], readiness=self._readiness_metrics,
            dead_letters=first.store.dead_letters,
        )
        self._metrics_app = make_wsgi_app(self.registry)

    def readiness(self) -> dict[str, LaneReadiness]:
        now = time.monotonic()
        return {name: self._lane(worker, now) for name, worker in self.workers.items()}

    def _lane(self, worker: Worker, now: float) -> LaneReadiness:
        busy = worker.settlement.busy_since
        return LaneReadiness(
            broker=worker.node is not None,
            consuming=worker.consuming,
            store=self._store_answers(worker.store.db, now),
            batch=busy is None or now - busy <= worker.message_deadline_s,
        )

    def _store_answers(self, db, now: float) -> bool:
        """Lanes on SQLite share one database: it is checked once for them all."""
        with self._lock:
            checked = self._store_checks.get(id(db))
            if checked is not None and now - checked[0] < STORE_CHECK_S:
                return checked[1]
            answered = db.ping(STORE_WAIT_S) is not False
            self._store_checks[id(db)] = (now, answered)
            return answered

    def _readiness_metrics(self) -> dict[str, tuple[bool, dict[str, bool]]]:
        return {
            name: (state.ready, {r.name: self.workers[name].consuming for r in self.workers[name].routes})
            for name, state in self.readiness().items()
        }

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _respond(start_response, "405 Method Not Allowed", {"error": "GET only"})
        if path == "/healthz":
            return _respond(start_response, "200 OK", {"alive": True})
        if path == "/readyz":
            lanes = self.readiness()
            ready = all(state.ready for state in lanes.values())
            body = {"ready": ready, "lanes": {name: asdict(state) for name, state in lanes.items()}}
            return _respond(start_response, "200 OK" if ready else "503 Service Unavailable", body)
        return _respond(start_response, "404 Not Found", {"error": "not found: /metrics, /healthz or /readyz"})


def _respond(start_response, status: str, body: dict) -> list[bytes]:
    data = json.dumps(body, sort_keys=True).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the process's exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args) -> None:  # noqa: A002 - the standard library's name
        pass  # a probe every few seconds is not worth a log line


class ProbeServer:
    """``Probes`` served at ``host:port`` (port 0: any free port, then ``port`` says which)."""

    def __init__(self, workers: dict[str, Worker] | Iterable[Worker], host: str, port: int):
        if not isinstance(workers, dict):
            workers = {w.name: w for w in workers}
        self.probes = Probes(workers)
        self._server = make_server(host, port, self.probes, server_class=_ThreadingServer, handler_class=_QuietHandler)
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="gridbus-probes", daemon=True)

    def start(self) -> "ProbeServer":
        self._thread.start()
        log.info("probes.serving", host=self.host, port=self.port, paths=["/metrics", "/healthz", "/readyz"])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
