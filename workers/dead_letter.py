"""What a dead letter says: its body, headers and RabbitMQ's ``x-death`` history, read for operators.

Reading only: nothing here talks to the broker. ``workers.dlq`` browses, replays and purges.
"""

from __future__ import annotations

import base64
import codecs
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import amqp

from routes import naming
from workers import headers as H

#: Route name shown for messages no route is bound to (``gridbus.unrouted.dlq``).
UNROUTED = "(unrouted)"
UNROUTED_ERROR_TYPE = "unroutable"

@dataclass(frozen=True)
class Death:
    """One entry of RabbitMQ's ``x-death`` header (newest first in the header)."""

    reason: str
    queue: str
    count: int
    exchange: str
    routing_keys: tuple[str, ...]
    time: datetime | None


@dataclass
class DeadLetter:
    """One message in a dead-letter queue, as the broker holds it."""

    route: str
    queue: str
    body: bytes
    properties: dict[str, Any]
    headers: dict[str, Any]

    @property
    def message_id(self) -> str | None:
        return self.properties.get("message_id")

    @property
    def deaths(self) -> list[Death]:
        return [_death(entry) for entry in self.headers.get(H.X_DEATH) or [] if isinstance(entry, dict)]

    @property
    def broker_death(self) -> Death | None:
        """The broker's own dead-lettering that put the message here, if that is how it came."""
        deaths = self.deaths
        if not deaths:
            return None
        newest = deaths[0]
        # An "expired" entry from a delay queue is history carried along, not the reason it is here.
        if newest.reason == "expired" and newest.queue != naming.work_queue(self.route):
            return None
        if H.ERROR_TYPE in self.headers:
            ours = _parse_time(self.headers.get(H.DEAD_LETTERED_AT))
            if ours is None or newest.time is None or _aware(newest.time) <= ours:
                return None
        return newest

    @property
    def error_type(self) -> str:
        if self.route == UNROUTED:
            return self.headers.get(H.ERROR_TYPE) or UNROUTED_ERROR_TYPE
        death = self.broker_death
        if death is not None:
            return f"broker:{death.reason}"
        return str(self.headers.get(H.ERROR_TYPE) or "unknown")

    @property
    def error_message(self) -> str:
        if self.route == UNROUTED and H.ERROR_MESSAGE not in self.headers:
            return "no route is bound to this exchange and routing key"
        death = self.broker_death
        if death is not None:
            return (
                f"RabbitMQ dead-lettered it from {death.queue} ({death.reason}, {death.count} time(s), "
                f"routing keys {', '.join(death.routing_keys) or '-'})"
            )
        return str(self.headers.get(H.ERROR_MESSAGE) or "")

    @property
    def charset(self) -> str:
        """Text encoding the publisher declared: charset in content_type, else content_encoding, else UTF-8."""
        content_type = str(self.properties.get("content_type") or "")
        for param in content_type.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
        encoding = self.properties.get("content_encoding")
        if encoding and _is_text_codec(encoding):
            return encoding
        return "utf-8"

    def body_text(self) -> tuple[str, str]:
        """``(encoding, text)``: the body decoded in its declared charset, else ``("base64", ...)``."""
        try:
            return self.charset, self.body.decode(self.charset)
        except (UnicodeDecodeError, LookupError):
            return "base64", base64.b64encode(self.body).decode("ascii")


def letter_from(route: str, queue: str, delivery: amqp.Message) -> DeadLetter:
    body = delivery.body
    body = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    properties = dict(delivery.properties)
    headers = dict(properties.get("application_headers") or {})
    return DeadLetter(route=route, queue=queue, body=body, properties=properties, headers=headers)


# --- header interpretation -----------------------------------------------------------------------


def _death(entry: dict) -> Death:
    keys = entry.get("routing-keys") or []
    return Death(
        reason=str(entry.get("reason", "")),
        queue=str(entry.get("queue", "")),
        count=int(entry.get("count", 0) or 0),
        exchange=str(entry.get("exchange", "")),
        routing_keys=tuple(str(k) for k in keys),
        time=entry.get("time") if isinstance(entry.get("time"), datetime) else None,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return _aware(value)
    if not value:
        return None
    try:
        return _aware(datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError:
        return None


def _is_text_codec(name: str) -> bool:
    try:
        return codecs.lookup(name)._is_text_encoding  # type: ignore[attr-defined]
    except (LookupError, AttributeError):
        return False
