"""What becomes of a message that failed: a retry copy in a delay queue, or a dead letter.

``fate_of`` decides it from the delivery, its error, its route's retry policy and the time, and
nothing else: no broker, no store, no clock of its own. The worker publishes what it returns and
acks the original once the broker confirmed the copy. ``poison`` decides when a redelivered
message that keeps crashing or hanging the worker is given up.

A copy carries the message's own headers as far as they fit (``envelope.fit``) and gridbus's:
its history only from a copy that came back through the retry exchange (the publisher's
``x-gridbus-*`` headers were dropped at intake), the source user only as the broker validated it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gridbus.contracts import naming
from gridbus.contracts.errors import GridbusError, PoisonMessage, TransientDeliveryError
from gridbus.routes.model import Route
from gridbus.workers import envelope
from gridbus.workers import headers as H

#: Headers the broker adds; never carried into a copy gridbus republishes.
BROKER_HEADERS = frozenset(
    {H.X_DEATH, H.DELIVERY_COUNT, "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"}
)


@dataclass(frozen=True)
class Fate:
    """The copy to publish for a failed message, and the outcome it gives the original."""

    outcome: str  # "retry-scheduled" or "dead-lettered"
    error: GridbusError  # what the copy says went wrong (``RetriesExhausted`` once retries are spent)
    exchange: str
    routing_key: str
    properties: dict
    headers: dict  # gridbus's headers and the message's own, fitted to the broker's frame


def fate_of(d, error: GridbusError, route: Route, now: datetime, epoch_s: float) -> Fate:
    """The fate of delivery ``d`` (a ``pipeline.Delivery``) that failed with ``error``.

    now: the worker's clock, which the failure stamps show; epoch_s: the wall clock the broker's
    delays run on (the in-memory broker's emulation reads the due time in it).

    A transient error with attempts left goes to the delay queue of its attempt's back-off
    (``route.retry``); anything else is a dead letter, a transient error whose attempts are spent
    turned into what that error says then (``TransientDeliveryError.exhausted``: usually
    ``RetriesExhausted``)."""
    carried = {k: v for k, v in d.headers.items() if k not in BROKER_HEADERS}
    first = carried.get(H.FIRST_FAILURE_AT)
    stamp = now.isoformat()
    headers = {
        H.FIRST_FAILURE_AT: first if type(first) is str else stamp,
        H.LAST_FAILURE_AT: stamp,
        H.ROUTE: route.name,
    }
    if d.envelope.dropped:
        headers[H.UNTRUSTED_DROPPED] = envelope.names(d.envelope.dropped)
    info = d.message.delivery_info
    if info.get("exchange") != naming.RETRY_EXCHANGE:
        headers[H.ORIGINAL_EXCHANGE] = info.get("exchange", "")
        headers[H.ORIGINAL_ROUTING_KEY] = info.get("routing_key", "")
    user = d.source_user
    if user:
        headers[H.SOURCE_USER] = user
    properties = {k: v for k, v in d.properties.items() if k not in ("user_id", "application_headers")}
    transient = isinstance(error, TransientDeliveryError)
    if transient and d.attempt < route.retry.attempts:
        delay = route.retry.delay_for(d.attempt)
        headers.update({H.ATTEMPT: d.attempt + 1, H.DUE_AT: epoch_s + delay})
        outcome, exchange, routing_key = "retry-scheduled", "", route.delay_queue(delay)
    else:
        if transient:
            error = error.exhausted(d.attempt)
        headers.update({H.ATTEMPT: d.attempt, H.DEAD_LETTERED_AT: stamp})
        outcome, exchange, routing_key = "dead-lettered", naming.DEAD_LETTER_EXCHANGE, route.name
    headers.update({H.ERROR_TYPE: error.kind, H.ERROR_MESSAGE: error.reason})
    return Fate(outcome, error, exchange, routing_key, properties, envelope.fit(headers, carried))


def poison(starts: int, route: Route, cause: str | None = None) -> PoisonMessage | None:
    """A redelivered message taken up ``starts`` times before without an outcome is poison once
    that reaches the route's ``max_crashes``; ``cause`` is what failed while it was last in hand."""
    if starts < route.max_crashes:
        return None
    also = f"; the last time, this failed while it was in hand: {cause}" if cause else ""
    return PoisonMessage(
        f"taken up {starts + 1} times without reaching an outcome: processing it crashes or hangs the "
        f"worker, or breaks its connection (limit {route.max_crashes} restarts){also}"
    )
