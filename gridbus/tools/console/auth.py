"""Who is signed in, and whether they may do what they ask.

- A session is a cookie signed with ``GRIDBUS_CONSOLE_SECRET`` (Starlette's ``SessionMiddleware``,
  itsdangerous): it holds the user's name, a CSRF token and when the login happened; it expires
  after ``GRIDBUS_CONSOLE_SESSION_HOURS``. The account is read again on every request, so a
  removed account or a changed role counts at once.
- With ``GRIDBUS_CONSOLE_TRUSTED_HEADER`` set, a request from one of
  ``GRIDBUS_CONSOLE_TRUSTED_PROXIES`` whose header names a local account is signed in as it (the
  proxy has done the single sign-on); the header from any other address is ignored.
- Every change is a POST that carries the session's CSRF token in the form field ``csrf``,
  compared in constant time; the cookie is ``SameSite=Strict`` as well.
- Every page needs a signed-in account of at least the page's role (``ROLES``); a GET without
  one goes to the login page, a POST without one is refused with 403.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gridbus.tools.console.accounts import Account, Accounts

CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class TrustedHeader:
    """The reverse proxy's single sign-on: ``name`` is believed only from ``proxies``."""

    name: str
    proxies: tuple[str, ...]


class Refused(Exception):
    """A request the signed-in user (or nobody) may not make; ``status`` 403 or 400."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use: every form of the page carries it."""
    token = request.session.get(CSRF_FIELD)
    if not token:
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, form) -> None:
    sent = form.get(CSRF_FIELD)
    expected = request.session.get(CSRF_FIELD)
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Refused(403, "the form is stale or did not come from this console (CSRF token missing or wrong): "
                           "reload the page")


def signed_in(request: Request) -> Account | None:
    accounts: Accounts = request.app.state.accounts
    trusted: TrustedHeader | None = request.app.state.trusted_header
    if trusted is not None and request.client is not None and request.client.host in trusted.proxies:
        name = request.headers.get(trusted.name)
        if name:
            return accounts.get(name)
    name = request.session.get("user")
    return accounts.get(name) if isinstance(name, str) else None


def start_session(request: Request, account: Account, now: float) -> None:
    """A new session for ``account``: nothing of the one before is kept (no session fixation)."""
    request.session.clear()
    request.session.update({"user": account.name, "since": int(now), CSRF_FIELD: secrets.token_urlsafe(32)})


def page(role: str) -> Callable:
    """The endpoint needs an account of at least ``role``; a POST also a valid CSRF token.

    The endpoint is called as ``endpoint(request, account)`` or, for a POST,
    ``endpoint(request, account, form)``.
    """

    def wrap(endpoint: Callable) -> Callable:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            account = signed_in(request)
            if request.method == "POST":
                form = await request.form()
                if account is None:
                    raise Refused(403, "not signed in: log in first")
                check_csrf(request, form)
                _check_role(account, role)
                return await _call(endpoint, request, account, form)
            if account is None:
                return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
            _check_role(account, role)
            return await _call(endpoint, request, account)

        guarded.role = role
        return guarded

    return wrap


def _check_role(account: Account, role: str) -> None:
    if not account.may(role):
        raise Refused(403, f"{account.name} has the {account.role} role: this needs the {role} role")


async def _call(endpoint: Callable, request: Request, *args):
    """Run a synchronous endpoint in Starlette's thread pool (the store's calls block)."""
    return await run_in_threadpool(endpoint, request, *args)


def local_path(target: str | None) -> str:
    """``target`` if it is a path on this console, else ``/``: a login never sends a user elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"
