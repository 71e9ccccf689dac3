"""What a dead letter says: its body, headers and RabbitMQ's ``x-death`` history, read for operators.

Reading only: nothing here talks to the broker. ``tools.dlq`` browses, replays and purges.

Where a letter's ``x-gridbus-*`` headers come from decides whether they are gridbus's history:

- a route's dead-letter queue is bound to ``gridbus.dlx`` only, and no system user may write
  there (``tools.users`` gives each system write access to ``^<system>\\.out$`` alone). A
  letter gridbus published there carries the headers gridbus wrote: gridbus drops every
  publisher-set ``x-gridbus-*`` header at intake (``workers.pipeline.Delivery``);
- a letter RabbitMQ dead-lettered itself from the route's work queue (``x-death``) is the message
  as it was queued. On a route fed by a system exchange that may be the publisher's original,
  headers and all, so its ``x-gridbus-*`` headers are not trusted. Its ``x-death`` cannot tell:
  RabbitMQ 3.10 keeps a publisher's entry for the same queue and reason, forged ``exchange``
  included, and only raises its count;
- ``gridbus.unrouted.dlq`` is fed by the system exchanges' alternate exchange: everything on it
  was written by the publisher.

Everything printed goes through ``visible`` (control characters, escape sequences and bidi or
format characters become escapes such as ``\\x1b`` or ``\\u202e``) and ``shown`` (also cut, with a
marker). Bodies are decoded only in UTF-8 or the GBK family (``TEXT_ENCODINGS``).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import amqp

from gridbus.contracts import naming
from gridbus.workers import headers as H
from gridbus.contracts.errors import NAMED_ESCAPES, escape_char, inert

#: Route name shown for messages no route is bound to (``gridbus.unrouted.dlq``).
UNROUTED = "(unrouted)"
UNROUTED_ERROR_TYPE = "unroutable"

#: Prefix of gridbus's own headers; on a letter whose headers are the publisher's they are untrusted.
GRIDBUS_PREFIX = "x-gridbus-"

#: The only charsets a body is decoded in (declared name, normalised -> codec): those the routes'
#: contracts accept. Codecs such as utf-7 or unicode_escape can turn harmless-looking bytes
#: (``+ABs-``) into control characters, and UTF-16/32 bodies are refused by every contract anyway.
TEXT_ENCODINGS = {
    "utf-8": "utf-8", "utf8": "utf-8", "us-ascii": "ascii", "ascii": "ascii",
    "gbk": "gbk", "cp936": "gbk", "gb2312": "gb2312", "gb18030": "gb18030",
}

_XML_ENCODING = re.compile(rb"\A(?:\xef\xbb\xbf)?\s*<\?xml\s[^>]{0,200}?encoding\s*=\s*[\"']([^\"']{1,40})[\"']")

#: Unicode categories never written raw: controls, format (bidi, zero-width), surrogates,
#: unassigned, line and paragraph separators.


# --- printing untrusted text -----------------------------------------------------------------------


def visible(value: str | bytes, *, layout: bool = False) -> str:
    """``value`` with nothing a terminal would act on: every control character (C0 with ESC, DEL,
    C1), format character (bidi overrides and isolates, zero-width marks) and line separator as an
    escape (``\\x1b``, ``\\u202e``); a backslash shown doubled, so every escape is unambiguous.

    Bytes are shown as printable ASCII with every other byte as ``\\xNN``. With ``layout``, line
    feeds and tabs stay as they are (a body's own lines); otherwise they are escaped too.
    """
    if isinstance(value, (bytes, bytearray)):
        return "".join(_byte(b, layout) for b in value)
    if not layout:
        return inert(value)
    return "".join(c if c in "\n\t" else escape_char(c) for c in value)


def _byte(b: int, layout: bool) -> str:
    c = chr(b)
    if layout and c in "\n\t":
        return c
    if c in NAMED_ESCAPES:
        return NAMED_ESCAPES[c]
    return c if 0x20 <= b < 0x7F else f"\\x{b:02x}"


def shown(value: Any, limit: int) -> str:
    """Any property or header value as one safe line of at most about ``limit`` characters of the
    original, with a marker saying how much was cut."""
    if isinstance(value, (str, bytes, bytearray)):
        unit = "characters" if isinstance(value, str) else "bytes"
        if len(value) <= limit:
            return visible(value)
        return visible(value[:limit]) + f"...[{len(value) - limit:,} more {unit} cut]"
    if isinstance(value, dict):
        text = "{" + ", ".join(f"{shown(k, limit)}: {shown(v, limit)}" for k, v in value.items()) + "}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(shown(v, limit) for v in value) + "]"
    else:
        text = visible(str(value))
    return text if len(text) <= limit else text[:limit] + f"...[{len(text) - limit:,} more characters cut]"


# --- the letter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Death:
    """One entry of RabbitMQ's ``x-death`` header (newest first in the header)."""

    reason: str
    queue: str
    count: int
    exchange: str
    routing_keys: tuple[str, ...]
    time: datetime | None


class BodyText(NamedTuple):
    """How a body is shown: ``shown_as`` a codec (``text`` decoded, not yet made ``visible``),
    ``"bytes"`` (``text`` is the bytes) or ``"base64"``; ``why`` says why it was not decoded."""

    shown_as: str
    text: str | bytes
    why: str = ""


@dataclass
class DeadLetter:
    """One message in a dead-letter queue, as the broker holds it.

    ``exchange`` and ``routing_key`` are the broker's delivery info (for an unrouted letter, where
    it was published). ``retry_only``: the route's work queue is fed by ``gridbus.retry`` alone
    (an internal route), so even a message RabbitMQ dead-lettered from it carries gridbus's headers.
    """

    route: str
    queue: str
    body: bytes
    properties: dict[str, Any]
    headers: dict[str, Any]
    exchange: str = ""
    routing_key: str = ""
    retry_only: bool = False

    @property
    def message_id(self) -> str | None:
        return self.properties.get("message_id")

    @property
    def deaths(self) -> list[Death]:
        """RabbitMQ's dead-letterings of it; none on an unrouted letter (any ``x-death`` there is the publisher's)."""
        entries = self.headers.get(H.X_DEATH) if self.route != UNROUTED else None
        return [_death(e) for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    @property
    def broker_death(self) -> Death | None:
        """RabbitMQ's own dead-lettering from the route's work queue, if that is how it came here.

        gridbus drops ``x-death`` from every copy it publishes, so an entry for the work queue is
        the broker's; an entry for another queue (a delay queue's ``expired``) is history.
        """
        if self.route == UNROUTED:
            return None
        deaths = self.deaths
        if deaths and deaths[0].queue == naming.work_queue(self.route):
            return deaths[0]
        return None

    @property
    def headers_from_gridbus(self) -> bool:
        """Whether the ``x-gridbus-*`` headers are the ones gridbus wrote (see the module's doc)."""
        if self.route == UNROUTED:
            return False
        return self.broker_death is None or self.retry_only

    @property
    def trusted_headers(self) -> dict[str, Any]:
        """The headers without the ``x-gridbus-*`` ones gridbus did not write."""
        if self.headers_from_gridbus:
            return dict(self.headers)
        return {k: v for k, v in self.headers.items() if not _is_gridbus_header(k)}

    @property
    def untrusted_headers(self) -> dict[str, Any]:
        """``x-gridbus-*`` headers gridbus did not write: shown apart, never read, never replayed."""
        if self.headers_from_gridbus:
            return {}
        return {k: v for k, v in self.headers.items() if _is_gridbus_header(k)}

    @property
    def source_user(self) -> str | None:
        """Who published it, as far as gridbus knows: a ``user_id`` property still on the message
        (RabbitMQ checked it against the publishing connection), else the source user gridbus
        recorded; None when neither exists (a replay is then refused as unauthorised again)."""
        user_id = self.properties.get("user_id")
        if user_id:
            return str(user_id)
        recorded = self.trusted_headers.get(H.SOURCE_USER)
        return recorded if isinstance(recorded, str) and recorded else None

    @property
    def error_type(self) -> str:
        if self.route == UNROUTED:
            return UNROUTED_ERROR_TYPE
        death = self.broker_death
        if death is not None:
            return f"broker:{death.reason}"
        return str(self.trusted_headers.get(H.ERROR_TYPE) or "unknown")

    @property
    def error_message(self) -> str:
        if self.route == UNROUTED:
            return f"no route is bound to exchange {self.exchange or '-'} with routing key {self.routing_key or '-'}"
        death = self.broker_death
        if death is not None:
            return (
                f"RabbitMQ dead-lettered it from {death.queue} ({death.reason}, {death.count} time(s), "
                f"routing keys {', '.join(death.routing_keys) or '-'})"
            )
        return str(self.trusted_headers.get(H.ERROR_MESSAGE) or "")

    @property
    def declared_charsets(self) -> list[str]:
        """Every charset the message declares: the XML declaration, content_type's charset, content_encoding."""
        declared = []
        xml = _XML_ENCODING.match(self.body[:300])
        if xml:
            declared.append(xml.group(1).decode("ascii", "replace"))
        content_type = str(self.properties.get("content_type") or "")
        for param in content_type.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                declared.append(value.strip().strip('"'))
        encoding = self.properties.get("content_encoding")
        if encoding and str(encoding).lower() not in ("identity", "binary", "8bit", "7bit"):
            declared.append(str(encoding))
        return declared

    def body_text(self) -> BodyText:
        """The body decoded in what it declares (the XML declaration first, as the contracts read
        it), UTF-8 when it declares nothing; never in a charset outside ``TEXT_ENCODINGS``."""
        declared = self.declared_charsets
        refused = [name for name in declared if _codec(name) is None]
        if refused:
            return _undecoded(
                self.body,
                f"declared encoding {refused[0]!r} is not used to decode (only UTF-8, GBK, GB2312, GB18030)",
            )
        codec = _codec(declared[0]) if declared else "utf-8"
        try:
            return BodyText(codec, self.body.decode(codec))
        except UnicodeDecodeError as exc:
            return _undecoded(self.body, f"not valid {codec} (first bad byte at offset {exc.start})")


def letter_from(route: str, queue: str, delivery: amqp.Message, *, retry_only: bool = False) -> DeadLetter:
    body = delivery.body
    body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    properties = dict(delivery.properties)
    headers = dict(properties.get("application_headers") or {})
    info = getattr(delivery, "delivery_info", None) or {}
    return DeadLetter(
        route=route,
        queue=queue,
        body=body,
        properties=properties,
        headers=headers,
        exchange=str(info.get("exchange") or ""),
        routing_key=str(info.get("routing_key") or ""),
        retry_only=retry_only,
    )


# --- header and body interpretation ----------------------------------------------------------------


def _is_gridbus_header(name: Any) -> bool:
    return isinstance(name, str) and name.lower().startswith(GRIDBUS_PREFIX)


def _codec(name: str) -> str | None:
    return TEXT_ENCODINGS.get(name.strip().lower().replace("_", "-"))


def _undecoded(body: bytes, why: str) -> BodyText:
    """Mostly printable ASCII as escaped bytes, anything else as base64."""
    printable = sum(1 for b in body if 0x20 <= b < 0x7F or b in (9, 10, 13))
    if printable >= 0.9 * len(body):
        return BodyText("bytes", body, why)
    return BodyText("base64", base64.b64encode(body).decode("ascii"), why)


def _death(entry: dict) -> Death:
    keys = entry.get("routing-keys")
    count = entry.get("count")
    return Death(
        reason=str(entry.get("reason", "")),
        queue=str(entry.get("queue", "")),
        count=count if isinstance(count, int) else 0,
        exchange=str(entry.get("exchange", "")),
        routing_keys=tuple(str(k) for k in keys) if isinstance(keys, list) else (),
        time=entry.get("time") if isinstance(entry.get("time"), datetime) else None,
    )
