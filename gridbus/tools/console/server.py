"""Serving the console with uvicorn, from the settings; ``ConsoleServer`` also runs it in a thread
(the browser tests)."""

from __future__ import annotations

import threading
import time

import structlog
import uvicorn

from gridbus.tools.console.app import ConsoleConfig, build_app
from gridbus.tools.console.auth import TrustedHeader
from gridbus.workers.bootstrap import load_routes
from gridbus.workers.settings import Settings

log = structlog.get_logger("gridbus.console")


def config_from(settings: Settings, routes=None) -> ConsoleConfig:
    trusted = None
    if settings.console_trusted_header:
        trusted = TrustedHeader(settings.console_trusted_header.lower(), settings.console_trusted_proxies)
    return ConsoleConfig(
        store_url=settings.store_url,
        broker_url=settings.broker_url,
        routes=tuple(routes if routes is not None else load_routes()),
        secret=settings.console_secret,
        session_hours=settings.console_session_hours,
        trusted_header=trusted,
    )


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT (uvicorn's own handlers finish the requests in hand)."""
    config = config_from(settings)
    if config.secret is None:
        log.warning("console.random_secret", detail="GRIDBUS_CONSOLE_SECRET unset: sessions end when the console stops")
    app = build_app(config)
    host = host or settings.console_host
    port = settings.console_port if port is None else port
    server = uvicorn.Server(_uvicorn_config(app, host, port))
    log.info("console.serving", url=f"http://{host}:{port}/", store=_without_password(config.store_url),
             trusted_header=settings.console_trusted_header)
    try:
        server.run()
    finally:
        app.state.store.close()


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def _uvicorn_config(app, host: str, port: int) -> uvicorn.Config:
    # No access log: a URL may carry a business key (the trace page), which is personal data.
    return uvicorn.Config(app, host=host, port=port, access_log=False, log_config=None, server_header=False,
                          proxy_headers=False)


class ConsoleServer:
    """The console served from a thread on ``host`` and a free port; ``url`` once started."""

    def __init__(self, app, host: str = "127.0.0.1"):
        self.app = app
        self._server = uvicorn.Server(_uvicorn_config(app, host, 0))
        self._thread = threading.Thread(target=self._server.run, name="gridbus-console", daemon=True)
        self.url = ""

    def __enter__(self) -> "ConsoleServer":
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the console did not start")
            time.sleep(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
