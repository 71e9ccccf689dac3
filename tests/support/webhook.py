"""A webhook receiver for the alert tests: records every POST, answers as told."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookReceiver:
    """Listens on a loopback port; ``failures`` first requests get HTTP 503, and each request
    waits ``delay_s`` before its answer (a slow or hanging receiver)."""

    def __init__(self, failures: int = 0, delay_s: float = 0.0):
        self.requests: list[dict] = []  # every body received, in order
        self.failures, self.delay_s = failures, delay_s
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the standard library's name
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with receiver._lock:
                    receiver.requests.append(body)
                    failing = receiver.failures > 0
                    receiver.failures -= failing
                time.sleep(receiver.delay_s)
                self.send_response(503 if failing else 204)
                self.end_headers()

            def log_message(self, format, *args):  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/hooks/gridbus"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
