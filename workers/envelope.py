"""The envelope of a message (its properties and headers): what gridbus trusts of it, and the
size of what gridbus writes back.

The rule, in one place: **everything a publisher controls is untrusted**, headers included.

- On a message that comes from a system exchange, every ``x-gridbus-*`` header was written by
  the publisher, whatever its name says: ``intake`` drops them before anything reads them, and
  names the dropped ones in ``x-gridbus-untrusted-dropped`` on any copy gridbus makes. Only a
  copy that came through ``gridbus.retry`` (which only gridbus's own user may write) carries
  gridbus's history (attempt, first failure, source user).
- The source system is the broker-validated ``user_id``; a retry copy carries the ``user_id``
  gridbus saw when it first took the message, in ``x-gridbus-source-user``.
- Header values gridbus reads are parsed with types and bounds; a bad one is a contract
  violation with a reason, never an exception in the worker.
- Headers larger than a route allows are refused, and every copy gridbus publishes (retry copy,
  dead letter) keeps its headers under ``COPY_HEADERS_MAX_BYTES``, well below a frame
  (RabbitMQ's ``frame_max``, 131,072 bytes: properties and headers must fit in one frame, or
  the broker closes the whole connection): gridbus's own headers first, then the carried ones
  that fit, the others named in ``x-gridbus-headers-dropped``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from gridbus.contracts.naming import RETRY_EXCHANGE

from gridbus.workers import headers as H
from gridbus.contracts.errors import ContractViolation, cut, inert, quote

OWN_PREFIX = "x-gridbus-"

#: Largest application headers table an inbound message may carry, in encoded bytes (a route
#: may set its own ``max_header_bytes``).
DEFAULT_MAX_HEADER_BYTES = 16 * 1024

#: Largest headers table of any copy gridbus publishes, in encoded bytes.
COPY_HEADERS_MAX_BYTES = 64 * 1024

#: Longest list of header names gridbus writes into one of its own headers.
_NAMES_MAX_BYTES = 1024

#: Highest attempt number gridbus writes; anything above is not one of gridbus's counters.
MAX_ATTEMPT = 1000


class Envelope:
    """What gridbus reads of one inbound message's headers.

    headers: the headers gridbus may read and carry (publisher-set ``x-gridbus-*`` dropped);
    attempt: 1-based attempt on the route (1 unless the message is gridbus's own retry copy);
    delivery_count: RabbitMQ's ``x-delivery-count`` (0 when absent);
    dropped: names of the publisher-set ``x-gridbus-*`` headers dropped;
    error: the contract violation the envelope amounts to, raised by the pipeline's checks.
    """

    __slots__ = ("headers", "attempt", "delivery_count", "dropped", "error")

    def __init__(self, headers: dict, attempt: int, delivery_count: int, dropped: tuple[str, ...],
                 error: ContractViolation | None):
        self.headers, self.attempt, self.delivery_count = headers, attempt, delivery_count
        self.dropped, self.error = dropped, error


_PLAIN = Envelope({}, 1, 0, (), None)


def of_delivery(message: Any, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> Envelope:
    """The envelope of a delivered message (py-amqp's or kombu's): trusted history only on a copy
    that came through gridbus's retry exchange."""
    from_retry = message.delivery_info.get("exchange") == RETRY_EXCHANGE
    return intake(message.headers, from_retry=from_retry, max_header_bytes=max_header_bytes)


def intake(headers: dict | None, *, from_retry: bool, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> Envelope:
    """The envelope of a message as gridbus may read it (see the module's rule)."""
    if not headers:
        return _PLAIN
    if type(headers) is not dict:
        return Envelope({}, 1, 0, (), ContractViolation("application headers are not a table"))
    dropped: tuple[str, ...] = ()
    if not from_retry:
        own = [name for name in headers if type(name) is str and name[:10].lower() == OWN_PREFIX]
        if own:
            dropped = tuple(own)
            headers = {k: v for k, v in headers.items() if k not in dropped}
    error = None
    size = table_size(headers)
    if size > max_header_bytes:
        error = ContractViolation(
            f"application headers of {size} bytes exceed the limit of {max_header_bytes} bytes: send business "
            "data in the body"
        )
    attempt, problem = _count(headers, H.ATTEMPT, 1, 1, MAX_ATTEMPT) if from_retry else (1, None)
    count, delivery_problem = _count(headers, H.DELIVERY_COUNT, 0, 0, 2**31 - 1)
    error = error or problem or delivery_problem
    return Envelope(headers, attempt, count, dropped, error)


def _count(headers: dict, name: str, default: int, lowest: int, highest: int) -> tuple[int, ContractViolation | None]:
    value = headers.get(name)
    if value is None:
        return default, None
    if type(value) is int and lowest <= value <= highest:
        return value, None
    return default, ContractViolation(
        f"header {name} must be a whole number from {lowest} to {highest}, got {quote(value, 40)}"
    )


def fit(own: dict, carried: dict, max_bytes: int = COPY_HEADERS_MAX_BYTES) -> dict:
    """The headers of a copy gridbus publishes: ``carried`` (the message's own headers), then
    ``own`` (gridbus's, which win), within ``max_bytes``. Carried headers that do not fit are
    left out, largest first, and named with their sizes in ``x-gridbus-headers-dropped``."""
    merged = {**carried, **own}
    size = table_size(merged)
    if size <= max_bytes:
        return merged
    sizes = sorted(((_entry_size(k, v), k) for k, v in carried.items() if k not in own), reverse=True)
    left_out = []
    for entry, name in sizes:
        if size <= max_bytes - _NAMES_MAX_BYTES - 64:
            break
        del merged[name]
        size -= entry
        left_out.append(f"{inert(str(name))[:60]} ({entry} bytes)")
    if left_out:
        merged[H.HEADERS_DROPPED] = cut(", ".join(left_out), _NAMES_MAX_BYTES)
    return merged


def names(dropped: tuple[str, ...]) -> str:
    """Header names as one bounded header value."""
    return cut(", ".join(quote(name, 60)[1:-1] for name in dropped), _NAMES_MAX_BYTES)


# -- encoded sizes, as AMQP 0-9-1 field tables are written ------------------------------------


def table_size(table: dict) -> int:
    """Encoded size of a field table in bytes (its 4-byte length included)."""
    return 4 + sum(_entry_size(k, v) for k, v in table.items())


def _entry_size(name: Any, value: Any) -> int:
    return 1 + len(str(name).encode("utf-8", "surrogatepass")) + _value_size(value)


def _value_size(value: Any) -> int:
    """As py-amqp's ``_write_item`` writes it (the type octet included); other values are
    counted as their text, an upper bound for what a client library would make of them."""
    if isinstance(value, str):
        return 5 + len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (bytes, bytearray)):
        return 5 + len(value)
    if isinstance(value, bool):
        return 2
    if isinstance(value, float) or isinstance(value, datetime):
        return 9
    if isinstance(value, int):
        return 5 if -2147483647 <= value <= 2147483647 else 9
    if isinstance(value, Decimal):
        return 6
    if isinstance(value, dict):
        return 1 + table_size(value)
    if isinstance(value, (list, tuple)):
        return 5 + sum(_value_size(v) for v in value)
    if value is None:
        return 1
    return 5 + len(str(value).encode("utf-8", "surrogatepass"))
