"""``workers.fate``: a failed message's retry copy or dead letter, decided without a broker."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.routes import NOTES, note_body
from gridbus.contracts import naming
from gridbus.contracts.errors import (
    AwaitingReference, ContractViolation, PoisonMessage, RetriesExhausted, TransientDeliveryError, UnknownReference,
)
from gridbus.routes.model import RetryPolicy
from gridbus.workers import headers as H
from gridbus.workers.fate import fate_of, poison
from gridbus.workers.pipeline import Delivery

NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))
EPOCH_S = 1_800_000_000.0
ROUTE = replace(NOTES, retry=RetryPolicy(attempts=3, first_delay_s=5.0, max_delay_s=600.0), max_crashes=3)


class _Message:
    def __init__(self, headers: dict | None = None, *, exchange: str = "pms.out", user_id: str | None = "pms"):
        self.body = note_body("k", "text")
        self.properties = {"message_id": str(uuid.uuid4()), "type": "Note", "content_type": "application/json"}
        if user_id is not None:
            self.properties["user_id"] = user_id
        self.headers = headers or {}
        self.delivery_info = {"exchange": exchange, "routing_key": "note.published", "redelivered": False}


def delivery(headers: dict | None = None, **kwargs) -> Delivery:
    return Delivery(route=ROUTE, message=_Message(headers, **kwargs))


def retry_copy(attempt: int, first_failure: str) -> Delivery:
    """A copy that came back through gridbus's retry exchange after ``attempt - 1`` failures."""
    return delivery(
        {H.ATTEMPT: attempt, H.FIRST_FAILURE_AT: first_failure, H.SOURCE_USER: "pms", "x-death": [{"count": 1}]},
        exchange=naming.RETRY_EXCHANGE, user_id=None,
    )


def test_a_transient_failure_with_attempts_left_goes_to_its_attempts_delay_queue():
    fate = fate_of(delivery(), TransientDeliveryError("peer down; will retry"), ROUTE, NOW, EPOCH_S)
    assert fate.outcome == "retry-scheduled"
    assert (fate.exchange, fate.routing_key) == ("", ROUTE.delay_queue(5.0))
    assert fate.headers[H.ATTEMPT] == 2
    assert fate.headers[H.DUE_AT] == EPOCH_S + 5.0
    assert fate.headers[H.FIRST_FAILURE_AT] == fate.headers[H.LAST_FAILURE_AT] == NOW.isoformat()
    assert (fate.headers[H.ERROR_TYPE], fate.headers[H.ERROR_MESSAGE]) == (fate.error.kind, "peer down; will retry")
    assert (fate.headers[H.ORIGINAL_EXCHANGE], fate.headers[H.ORIGINAL_ROUTING_KEY]) == ("pms.out", "note.published")
    assert fate.headers[H.SOURCE_USER] == "pms"
    assert H.DEAD_LETTERED_AT not in fate.headers


def test_the_second_attempt_waits_twice_as_long_and_keeps_the_first_failure_time():
    fate = fate_of(retry_copy(2, "2026-12-08T16:59:00+08:00"), TransientDeliveryError("again"), ROUTE, NOW, EPOCH_S)
    assert fate.routing_key == ROUTE.delay_queue(10.0)
    assert fate.headers[H.ATTEMPT] == 3
    assert fate.headers[H.FIRST_FAILURE_AT] == "2026-12-08T16:59:00+08:00"
    assert fate.headers[H.LAST_FAILURE_AT] == NOW.isoformat()
    assert H.ORIGINAL_EXCHANGE not in fate.headers  # a retry copy's origin was stamped on its first copy
    assert "x-death" not in fate.headers  # the broker's headers are never carried


def test_a_transient_failure_on_the_last_attempt_is_a_dead_letter_saying_the_retries_are_spent():
    fate = fate_of(retry_copy(3, "2026-12-08T16:59:00+08:00"), TransientDeliveryError("peer down; will retry"),
                   ROUTE, NOW, EPOCH_S)
    assert fate.outcome == "dead-lettered"
    assert (fate.exchange, fate.routing_key) == (naming.DEAD_LETTER_EXCHANGE, ROUTE.name)
    assert isinstance(fate.error, RetriesExhausted)
    assert fate.error.reason == "gave up after 3 attempts; last error: peer down"
    assert fate.headers[H.ERROR_TYPE] == fate.error.kind
    assert fate.headers[H.ERROR_MESSAGE] == fate.error.reason
    assert fate.headers[H.ATTEMPT] == 3
    assert fate.headers[H.DEAD_LETTERED_AT] == NOW.isoformat()
    assert H.DUE_AT not in fate.headers


def test_a_permanent_failure_is_a_dead_letter_on_the_first_attempt_with_its_own_error():
    error = ContractViolation("field PlanNo missing")
    fate = fate_of(delivery(), error, ROUTE, NOW, EPOCH_S)
    assert fate.outcome == "dead-lettered"
    assert fate.error is error
    assert fate.headers[H.ERROR_MESSAGE] == "field PlanNo missing"
    assert fate.headers[H.ATTEMPT] == 1


def test_the_copy_keeps_the_messages_properties_but_never_user_id():
    fate = fate_of(delivery(), ContractViolation("bad"), ROUTE, NOW, EPOCH_S)
    assert fate.properties["type"] == "Note"
    assert "user_id" not in fate.properties  # gridbus publishes the copy as itself


def test_forged_gridbus_headers_from_a_publisher_are_named_not_trusted():
    d = delivery({H.ATTEMPT: 99, H.FIRST_FAILURE_AT: "1999-01-01T00:00:00+08:00", "trace": "abc"})
    fate = fate_of(d, TransientDeliveryError("down"), ROUTE, NOW, EPOCH_S)
    assert fate.headers[H.ATTEMPT] == 2  # the forged attempt count was not read
    assert fate.headers[H.FIRST_FAILURE_AT] == NOW.isoformat()
    assert H.ATTEMPT in fate.headers[H.UNTRUSTED_DROPPED]
    assert fate.headers["trace"] == "abc"  # the message's own headers are carried


def test_the_same_inputs_give_the_same_fate():
    d, error = delivery(), TransientDeliveryError("down")
    assert fate_of(d, error, ROUTE, NOW, EPOCH_S) == fate_of(d, error, ROUTE, NOW, EPOCH_S)


@pytest.mark.parametrize(("starts", "is_poison"), [(0, False), (2, False), (3, True), (7, True)])
def test_a_redelivered_message_is_poison_once_its_starts_reach_the_routes_limit(starts, is_poison):
    error = poison(starts, ROUTE, cause="ConnectionResetError: reset by peer")
    assert (error is not None) == is_poison
    if error is not None:
        assert isinstance(error, PoisonMessage)
        assert f"taken up {starts + 1} times" in error.reason
        assert "limit 3 restarts" in error.reason
        assert error.reason.endswith("failed while it was in hand: ConnectionResetError: reset by peer")


def test_a_reference_still_unknown_once_the_retries_are_spent_is_an_unknown_reference():
    error = AwaitingReference("line-transformer relation names transformer PTR-1, not held yet; will retry")
    waiting = fate_of(delivery(), error, ROUTE, NOW, EPOCH_S)
    assert waiting.outcome == "retry-scheduled"
    assert waiting.headers[H.ERROR_TYPE] == "awaiting-reference"
    fate = fate_of(retry_copy(3, "2026-12-08T16:59:00+08:00"), error, ROUTE, NOW, EPOCH_S)
    assert fate.outcome == "dead-lettered"
    assert isinstance(fate.error, UnknownReference)
    assert fate.headers[H.ERROR_TYPE] == "unknown-reference"
    assert fate.error.reason == "still unknown after 3 attempts: line-transformer relation names transformer PTR-1, not held yet"
