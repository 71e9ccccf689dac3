"""The console's web application: Starlette, server-rendered pages, one port (``gridbus console``).

Pages (every one needs a login, see ``auth``):

| path | role | what |
|---|---|---|
| ``/`` | viewer | per route: processed, failed, retried, dead-lettered in the last hour and day, queue depths; charts |
| ``/trace?key=KEY`` | viewer | the rows ``gridbus trace KEY`` prints |
| ``/login``, ``/logout`` | - | a password login; logout is a POST with the CSRF token |

and the dead-letter pages, replays and audit log (``dead_letter_pages``).

The endpoints are plain functions run in Starlette's thread pool: the store's calls block.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gridbus.routes.model import Route as RouteDeclaration
from gridbus.tools.console import charts, dead_letter_pages
from gridbus.tools.console import overview as activity
from gridbus.tools.console.accounts import Account, Accounts
from gridbus.tools.console.auth import (
    Refused, TrustedHeader, check_csrf, local_path, page, signed_in, start_session,
)
from gridbus.tools.console.replayer import Replayer
from gridbus.tools.console.rendering import SECURITY_HEADERS, environment, render
from gridbus.workers.store import Store

log = structlog.get_logger("gridbus.console")

#: Longest business key a trace page looks up (the store's keys are far shorter).
MAX_KEY_CHARS = 200


@dataclass
class ConsoleConfig:
    """What the console needs, from the settings (``GRIDBUS_CONSOLE_*``, the store and broker URLs)."""

    store_url: str
    broker_url: str
    #: the routes the workers run: their names, and their contracts for an edited body
    routes: tuple[RouteDeclaration, ...]
    #: signs the session cookies; a random one (sessions end with the process) when None
    secret: str | None = None
    session_hours: float = 8.0
    trusted_header: TrustedHeader | None = None
    #: the session cookie only over HTTPS (behind a TLS-terminating proxy)
    https_only: bool = False
    clock: Callable[[], float] = field(default=time.time)


def build_app(config: ConsoleConfig, store: Store | None = None) -> Starlette:
    """The application; it opens the store (or uses ``store``) and creates the accounts table."""
    store = store or Store(config.store_url)
    app = Starlette(
        routes=[
            Route("/", overview_page),
            Route("/trace", trace_page),
            Route("/login", login_page, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            *dead_letter_pages.routes(),
            Mount("/static", StaticFiles(packages=[("gridbus.tools.console", "static")]), name="static"),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=config.secret or secrets.token_urlsafe(32),
                session_cookie="gridbus_console",
                max_age=int(config.session_hours * 3600),
                same_site="strict",
                https_only=config.https_only,
            ),
        ],
        exception_handlers={Refused: refused},
    )
    app.state.config = config
    app.state.store = store
    app.state.accounts = Accounts(store.db)
    app.state.trusted_header = config.trusted_header
    app.state.templates = environment()
    app.state.replayer = Replayer(store, config.broker_url, {r.name: r for r in config.routes}, config.clock)
    return app


class SecurityHeaders:
    """Adds ``SECURITY_HEADERS`` to every response (pure ASGI, so streaming is untouched)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)


def refused(request: Request, exc: Refused) -> HTMLResponse:
    account = signed_in(request)
    log.warning("console.refused", path=request.url.path, method=request.method,
                user=account.name if account else None, reason=exc.reason)
    return render(request, "refused.html", account, status=exc.status, reason=exc.reason)


# --- sign in and out -------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    next_path = local_path(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "login.html", None, next_path=next_path, error=None)
    form = await request.form()
    check_csrf(request, form)
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:1024]
    next_path = local_path(str(form.get("next", "/")))
    account = await run_in_threadpool(request.app.state.accounts.authenticate, name, password)
    if account is None:
        log.warning("console.login_refused", user=name)
        return render(request, "login.html", None, status=401, next_path=next_path,
                      error="unknown user name or wrong password")
    start_session(request, account, request.app.state.config.clock())
    log.info("console.login", user=account.name, role=account.role)
    return RedirectResponse(next_path, status_code=303)


@page("viewer")
def logout(request: Request, account: Account, form) -> Response:
    request.session.clear()
    log.info("console.logout", user=account.name)
    return RedirectResponse("/login", status_code=303)


# --- pages ------------------------------------------------------------------------------------------


@page("viewer")
def overview_page(request: Request, account: Account) -> Response:
    config: ConsoleConfig = request.app.state.config
    db = request.app.state.store.db
    now = config.clock()
    names = [r.name for r in config.routes]
    store = request.app.state.store
    rows = activity.with_depths(
        activity.activity(db, store.dead_letters, names, now), activity.queue_depths(config.broker_url, names)
    )
    throughput = activity.hourly_throughput(db, now)
    dead = activity.hourly_dead_letters(db, now)
    return render(
        request, "overview.html", account, rows=rows, now=now,
        throughput_chart=charts.bars(throughput, "processed per hour"),
        dead_letter_chart=charts.bars(dead, "dead-lettered per hour"),
    )


@page("viewer")
def trace_page(request: Request, account: Account) -> Response:
    key = request.query_params.get("key", "").strip()[:MAX_KEY_CHARS]
    rows = request.app.state.store.journal.trace(key) if key else []
    return render(request, "trace.html", account, key=key, rows=rows)
