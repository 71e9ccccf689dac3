"""The console's templates, where nothing a publisher wrote can act.

Every value a template prints goes through ``finalize``: control characters, escape sequences,
bidi and zero-width characters become visible escapes (``tools.letters.visible``, the rule the
CLI follows), then Jinja2's autoescape makes ``<``, ``>``, ``&`` and quotes inert. A body keeps its
own line feeds and tabs when it is handed in as ``Lines``. The pages carry no script at all, and
the Content-Security-Policy the app sends forbids any (``SECURITY_HEADERS``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gridbus.tools.console.accounts import Account
from gridbus.tools.console.auth import csrf_token

from gridbus.tools.letters import visible
from gridbus.workers.store.dead_letters import STATUSES
from gridbus.workers.runtime import CHINA_TZ

#: Sent with every response: no script, no frame, no form to elsewhere, nothing cached.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


class Lines(str):
    """Text shown on several lines (a body): its line feeds and tabs are kept, nothing else."""


class Inert(str):
    """Text already made inert by ``tools.letters.visible`` or ``shown`` (escaping it again would
    double its backslashes); autoescape still applies."""


def finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, jinja2.runtime.Undefined) or isinstance(value, (int, float)):
        return value
    if hasattr(value, "__html__"):  # markup the templates build themselves (the charts)
        return value
    if isinstance(value, Inert):
        return str(value)
    if isinstance(value, Lines):
        return visible(str(value), layout=True)
    return visible(str(value))


def local_time(epoch_s: float | None) -> str:
    """Seconds since the epoch as gridbus shows times: ISO 8601 in UTC+8, to the second."""
    if epoch_s is None:
        return ""
    return datetime.fromtimestamp(float(epoch_s), CHINA_TZ).isoformat(timespec="seconds")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("gridbus.tools.console", "templates"),
        autoescape=True,
        finalize=finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_time"] = local_time
    env.filters["lines"] = Lines
    env.globals["statuses"] = STATUSES
    env.filters["count"] = lambda n: "?" if n is None else f"{n:,}"
    return env


def render(request: Request, template: str, account: Account | None, status: int = 200, **context) -> HTMLResponse:
    """``template`` rendered for ``account``, with the session's CSRF token for its forms."""
    html = request.app.state.templates.get_template(template).render(
        account=account, csrf=csrf_token(request), path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=status)
