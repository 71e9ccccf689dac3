"""Circuit breakers: one per synchronous peer, so a peer that is down costs neither calls nor time.

A breaker is *closed* while its peer answers. After ``failures`` transient failures in a row
(timeout, refused connection, HTTP 5xx, SOAP Server fault: a ``TransientDeliveryError``, or an
unclassified exception, which the pipeline retries too) it *opens*: every delivery to the peer
fails at once with ``BreakerOpen``, a ``TransientDeliveryError``, so the message goes to its
broker-held retry copy (a delay queue) without a call. Once ``cooldown_s`` has passed, the next
delivery is let through as the one probe (*half-open*) while the others still fail at once; the
probe's success closes the breaker, its failure opens it again for another cool-down. An answer
that refuses the request (a ``PermanentError``: SOAP Client fault, HTTP 4xx, ``Result`` other
than OK) shows that the peer is up: it counts as a success.

Each change of state is one log line, ``breaker.state``, with the peer, the new state, the
failures in a row, since when, and (when open) when the next probe may go. The clock is
injected (``clock() -> datetime``, timezone-aware), so the tests drive it without sleeping. A
breaker is shared by the lanes of one process that call its peer (see ``workers.lanes``): it is
thread-safe.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Callable

from gridbus.contracts.base import MappingContext
from gridbus.contracts.errors import PermanentError, TransientDeliveryError
from gridbus.workers.logging import get_logger

log = get_logger("gridbus.breaker")

#: Longest part of the last failure's reason quoted in a ``BreakerOpen`` reason.
_MAX_LAST_ERROR = 200


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class State(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class BreakerOpen(TransientDeliveryError):
    """The peer's breaker is open: not called; the message waits for its broker-held retry."""

    kind = "breaker-open"


class CircuitBreaker:
    """The breaker of one peer.

    failures: transient failures in a row that open it (at least 1).
    cooldown_s: seconds it stays open before one probe call is let through.
    """

    def __init__(
        self, peer: str, *, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], datetime] = utc_now
    ):
        if failures < 1 or cooldown_s <= 0:
            raise ValueError(f"breaker of {peer}: failures must be at least 1 and cooldown_s above 0")
        self.peer = peer
        self.threshold = failures
        self.cooldown = timedelta(seconds=cooldown_s)
        self.clock = clock
        self.state = State.CLOSED
        self.failures = 0  # transient failures in a row
        self.since = clock()  # when the current state began
        self.last_error = ""
        self._probing = False  # half-open: the probe is on its way
        self._lock = threading.Lock()

    @property
    def probe_at(self) -> datetime:
        """When an open breaker lets the next probe through."""
        return self.since + self.cooldown

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` if the breaker admits a call now, else ``BreakerOpen``; the
        outcome moves the breaker (see the module's docstring)."""
        probe = self._admit()
        try:
            result = fn(*args, **kwargs)
        except TransientDeliveryError as exc:
            self._failed(probe, exc.reason)
            raise
        except PermanentError:
            self._succeeded(probe)
            raise
        except Exception as exc:
            self._failed(probe, f"{type(exc).__name__}: {exc}")
            raise
        except BaseException:
            self._release(probe)
            raise
        self._succeeded(probe)
        return result

    def _admit(self) -> bool:
        """True for the probe, False for a call while closed; raises ``BreakerOpen`` otherwise."""
        with self._lock:
            if self.state is State.CLOSED:
                return False
            now = self.clock()
            if self.state is State.OPEN and now >= self.probe_at:
                self._move(State.HALF_OPEN, now)
            if self.state is State.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            raise BreakerOpen(self._open_reason())

    def _open_reason(self) -> str:
        last = " ".join(self.last_error.split())
        if len(last) > _MAX_LAST_ERROR:
            last = last[:_MAX_LAST_ERROR] + "..."
        if self.state is State.HALF_OPEN:
            when = "a probe call is on its way"
        else:
            when = f"next probe at {_iso(self.probe_at)}"
        return (
            f"circuit breaker for {self.peer} is {self.state.value} since {_iso(self.since)} after "
            f"{self.failures} transient failures in a row (last: {last}); not called, {when}; "
            "the message waits for its broker-held retry"
        )

    def _succeeded(self, probe: bool) -> None:
        with self._lock:
            if probe:
                self._probing = False
            self.failures = 0
            if self.state is not State.CLOSED:
                self._move(State.CLOSED, self.clock())

    def _failed(self, probe: bool, reason: str) -> None:
        with self._lock:
            if probe:
                self._probing = False
            self.failures += 1
            self.last_error = reason
            tripped = self.state is State.CLOSED and self.failures >= self.threshold
            if tripped or (probe and self.state is State.HALF_OPEN):
                self._move(State.OPEN, self.clock())

    def _release(self, probe: bool) -> None:
        with self._lock:
            if probe:
                self._probing = False

    def _move(self, state: State, now: datetime) -> None:
        self.state, self.since = state, now
        fields = dict(peer=self.peer, state=state.value, failures=self.failures, since=_iso(now))
        if state is State.OPEN:
            log.warning("breaker.state", probe_at=_iso(self.probe_at), last_error=self.last_error, **fields)
        else:
            log.info("breaker.state", **fields)


class GuardedAdapter:
    """A synchronous adapter behind its peer's breaker: ``deliver`` is the adapter's, admitted by
    the breaker. ``on_return`` (set by the lane that owns this adapter) is called after every
    delivery, answered or not: the lane's watchdog counts its deadline from there."""

    def __init__(self, adapter: Any, breaker: CircuitBreaker):
        self.adapter = adapter
        self.name = adapter.name
        self.breaker = breaker
        self.on_return: Callable[[], None] | None = None

    def deliver(self, operation: str, output: Any, context: MappingContext) -> None:
        try:
            self.breaker.call(self.adapter.deliver, operation, output, context)
        finally:
            if self.on_return is not None:
                self.on_return()

    def load(self) -> None:
        load = getattr(self.adapter, "load", None)
        if load is not None:
            load()

    def close(self) -> None:
        self.adapter.close()


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds")
