"""The circuit breaker's state machine, on a clock the test moves (no sleeping)."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone

import pytest
import structlog

from gridbus.workers import logging as gridbus_logging
from gridbus.workers.breaker import BreakerOpen, CircuitBreaker, GuardedAdapter, State
from gridbus.contracts.errors import PermanentDeliveryError, TransientDeliveryError

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Peer:
    """A synchronous peer whose answers the test sets; counts the calls that reached it."""

    name = "cmd"

    def __init__(self):
        self.calls = 0
        self.answer: Exception | None = None

    def deliver(self, operation, output, context) -> None:
        self.calls += 1
        if self.answer is not None:
            raise self.answer

    def close(self) -> None:
        pass


DOWN = TransientDeliveryError("SOAP ReceiveSupplyPlan to http://cmd failed: HTTP 503: injected http503; will retry")
REFUSED = PermanentDeliveryError("SOAP ReceiveSupplyPlan to http://cmd refused: soap:Client")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def peer():
    return Peer()


@pytest.fixture
def logs():
    stream = io.StringIO()
    gridbus_logging.configure("json", "INFO", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if '"breaker.state"' in line]
    structlog.reset_defaults()


def breaker_for(clock, failures=3, cooldown_s=10.0) -> CircuitBreaker:
    return CircuitBreaker("cmd", failures=failures, cooldown_s=cooldown_s, clock=clock)


def deliver(breaker, peer):
    return breaker.call(peer.deliver, "ReceiveSupplyPlan", None, None)


def fail(breaker, peer, times: int) -> None:
    peer.answer = DOWN
    for _ in range(times):
        with pytest.raises(TransientDeliveryError):
            deliver(breaker, peer)


def test_opens_after_the_failures_in_a_row_and_then_calls_no_more(clock, peer, logs):
    breaker = breaker_for(clock)
    fail(breaker, peer, 2)
    assert breaker.state is State.CLOSED
    fail(breaker, peer, 1)
    assert breaker.state is State.OPEN and peer.calls == 3

    clock.advance(9.9)
    with pytest.raises(BreakerOpen) as caught:
        deliver(breaker, peer)
    assert peer.calls == 3  # not called
    reason = caught.value.reason
    assert "circuit breaker for cmd is open since 2026-12-02T09:00:00.000+08:00" in reason
    assert "next probe at 2026-12-02T09:00:10.000+08:00" in reason
    assert "after 3 transient failures in a row" in reason and "HTTP 503" in reason
    assert isinstance(caught.value, TransientDeliveryError) and caught.value.kind == "breaker-open"
    [opened] = logs()
    assert (opened["peer"], opened["state"], opened["failures"]) == ("cmd", "open", 3)
    assert opened["since"] == "2026-12-02T09:00:00.000+08:00" and opened["probe_at"] == "2026-12-02T09:00:10.000+08:00"
    assert opened["level"] == "warning"


def test_a_success_resets_the_run_of_failures(clock, peer):
    breaker = breaker_for(clock)
    fail(breaker, peer, 2)
    peer.answer = None
    deliver(breaker, peer)
    fail(breaker, peer, 2)
    assert breaker.state is State.CLOSED and breaker.failures == 2


def test_a_refusal_shows_the_peer_is_up(clock, peer):
    breaker = breaker_for(clock)
    fail(breaker, peer, 2)
    peer.answer = REFUSED
    with pytest.raises(PermanentDeliveryError):
        deliver(breaker, peer)
    assert breaker.failures == 0
    fail(breaker, peer, 2)
    assert breaker.state is State.CLOSED


def test_unclassified_exceptions_count_as_failures(clock, peer):
    breaker = breaker_for(clock, failures=1)
    peer.answer = OSError("connection reset")
    with pytest.raises(OSError):
        deliver(breaker, peer)
    assert breaker.state is State.OPEN and "OSError: connection reset" in breaker.last_error


def test_after_the_cooldown_one_probe_goes_and_its_success_closes(clock, peer, logs):
    breaker = breaker_for(clock)
    fail(breaker, peer, 3)
    clock.advance(10)
    peer.answer = None

    probe = breaker._admit()  # the probe is on its way ...
    assert probe is True and breaker.state is State.HALF_OPEN
    with pytest.raises(BreakerOpen, match="is half-open since .* a probe call is on its way"):
        deliver(breaker, peer)  # ... so the others still fail at once
    breaker._succeeded(probe)
    assert breaker.state is State.CLOSED and breaker.failures == 0

    deliver(breaker, peer)
    assert [(line["state"], line["since"]) for line in logs()] == [
        ("open", "2026-12-02T09:00:00.000+08:00"),
        ("half-open", "2026-12-02T09:00:10.000+08:00"),
        ("closed", "2026-12-02T09:00:10.000+08:00"),
    ]


def test_a_failed_probe_opens_again_for_another_cooldown(clock, peer, logs):
    breaker = breaker_for(clock)
    fail(breaker, peer, 3)
    clock.advance(12)
    fail(breaker, peer, 1)  # the probe
    assert breaker.state is State.OPEN and peer.calls == 4
    assert breaker.since == T0 + timedelta(seconds=12)

    clock.advance(9)
    with pytest.raises(BreakerOpen, match=r"next probe at 2026-12-02T09:00:22\.000"):
        deliver(breaker, peer)
    clock.advance(1)
    peer.answer = None
    deliver(breaker, peer)
    assert breaker.state is State.CLOSED and peer.calls == 5
    assert [line["state"] for line in logs()] == ["open", "half-open", "open", "half-open", "closed"]


def test_a_probe_interrupted_without_an_answer_lets_the_next_one_go(clock, peer):
    breaker = breaker_for(clock, failures=1)
    fail(breaker, peer, 1)
    clock.advance(10)
    peer.answer = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        deliver(breaker, peer)
    peer.answer = None
    deliver(breaker, peer)
    assert breaker.state is State.CLOSED


def test_the_open_reason_quotes_the_last_error_bounded_on_one_line(clock, peer):
    breaker = breaker_for(clock, failures=1)
    peer.answer = TransientDeliveryError("HTTP 503:\n" + "x" * 5000)
    with pytest.raises(TransientDeliveryError):
        deliver(breaker, peer)
    with pytest.raises(BreakerOpen) as caught:
        deliver(breaker, peer)
    assert "\n" not in caught.value.reason and len(caught.value.reason) < 600


def test_settings_out_of_range_are_refused(clock):
    with pytest.raises(ValueError):
        CircuitBreaker("cmd", failures=0, clock=clock)
    with pytest.raises(ValueError):
        CircuitBreaker("cmd", cooldown_s=0, clock=clock)


def test_the_guarded_adapter_reports_every_return(clock, peer):
    guarded = GuardedAdapter(peer, breaker_for(clock, failures=1))
    returns = []
    guarded.on_return = lambda: returns.append(peer.calls)
    guarded.deliver("ReceiveSupplyPlan", None, None)
    peer.answer = DOWN
    with pytest.raises(TransientDeliveryError):
        guarded.deliver("ReceiveSupplyPlan", None, None)
    with pytest.raises(BreakerOpen):
        guarded.deliver("ReceiveSupplyPlan", None, None)
    assert returns == [1, 2, 2] and guarded.name == "cmd" and not hasattr(guarded, "send")

