"""The worker's parts besides consuming and settling, each called per batch or per loop turn.

As dramatiq's middleware, but batch-shaped: a part sees a whole settled batch at once
(``after_settle``), so what it writes costs one store round trip per batch, not one per message;
``on_turn`` runs once per turn of the worker's loop, busy or idle.

- ``OutcomeLog``: counts outcomes and logs one line per message (failures always, the rest at INFO);
- ``TraceJournal``: the journal ``gridbus trace`` reads, for messages that have business keys;
- ``DueSchedules``: sends each durable schedule that fell due, marks it fired once confirmed;
- ``RetentionPurge``: forgets processed ids older than the retention, a chunk per turn.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime
from typing import Callable

from gridbus.contracts import naming
from gridbus.routes.model import Route
from gridbus.workers import headers as H
from gridbus.workers.amqp import ConfirmTimeout, Publisher
from gridbus.workers.logging import get_logger
from gridbus.workers.pipeline import Delivery
from gridbus.workers.store.idempotency import Idempotency
from gridbus.workers.store.journal import Journal
from gridbus.workers.store.schedules import DueSchedule, Schedules

log = get_logger("gridbus.worker")


class Part:
    """A part does nothing by default at either point."""

    def after_settle(self, batch: list[Delivery]) -> None:
        """Every message of ``batch`` is settled: acked, or requeued (``outcome`` says which)."""

    def on_turn(self) -> None:
        """One turn of the worker's loop ended."""


class OutcomeLog(Part):
    """``counts``: messages settled so far by outcome (shown by ``worker.stopped``)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def after_settle(self, batch: list[Delivery]) -> None:
        counts, info = self.counts, log.is_enabled_for(logging.INFO)
        for d in batch:
            counts[d.outcome] = counts.get(d.outcome, 0) + 1
            if d.error is None and not info:
                continue
            fields = dict(
                message_id=d.message_id,
                correlation_id=d.correlation_id,
                route=d.route.name,
                outcome=d.outcome,
                attempt=d.attempt,
                duration_ms=round((time.monotonic() - d.started) * 1000, 2),
            )
            if d.error is not None:
                log.warning("message", error_type=d.error.kind, reason=d.error.reason, **fields)
            else:
                log.info("message", **fields)


class TraceJournal(Part):
    """Every outcome and delivery of messages that have business keys, one commit per batch."""

    def __init__(self, journal: Journal, clock: Callable[[], datetime]):
        self.journal, self.clock = journal, clock

    def after_settle(self, batch: list[Delivery]) -> None:
        traced = [d for d in batch if d.trace_keys]
        if not traced:
            return
        at = self.clock().timestamp()
        rows = []
        for d in traced:
            if d.error is not None:
                detail = f"{d.error.kind}: {d.error.reason}"
            else:
                detail = f"{d.properties.get('type')} from {d.route.source.system}"
            if d.attempt > 1:
                detail += f" (attempt {d.attempt})"
            entries = [(d.outcome or "", detail)]
            entries += [
                ("sent", f"{step} -> {d.outputs[step][0]} (message {d.outputs[step][1]})")
                for step in d.delivered
                if step in d.outputs
            ]
            rows += [(at, key, event, d.route.name, d.message_id or "", text) for key in d.trace_keys for event, text in entries]
        self.journal.append(rows)


class DueSchedules(Part):
    """Schedules that routes' decisions set (``contracts.state.Schedule``) are kept in the store;
    each one that fell due by the worker's clock goes to its internal route through the retry
    exchange and is marked fired once the broker confirmed it, so a schedule survives worker and
    broker restarts. Polled every ``poll_s``; ``meter`` (a ``workers.metrics.Meter``, or None)
    is told how many were due at each poll."""

    def __init__(
        self, routes: list[Route], schedules: Schedules, publisher: Callable[[], Publisher], clock: Callable[[], datetime],
        poll_s: float, meter=None,
    ):
        self.routes = {r.name: r for r in routes if r.source.internal}
        self.schedules, self.publisher, self.clock, self.poll_s = schedules, publisher, clock, poll_s
        self.meter = meter
        self._last_poll = 0.0

    def on_turn(self) -> None:
        if not self.routes or time.monotonic() - self._last_poll < self.poll_s:
            return
        self._last_poll = time.monotonic()
        now = self.clock()
        due = self.schedules.due(list(self.routes), now)
        if self.meter is not None:
            self.meter.due({route: sum(s.route == route for s in due) for route in self.routes})
        if not due:
            return
        tickets = {self._publish(s, now): s for s in due}
        results = self.publisher().wait()
        for ticket, schedule in tickets.items():
            error = results.get(ticket, ConfirmTimeout("publish outcome unknown"))
            if error is None:
                self.schedules.mark_fired(schedule, now)
                log.info("schedule.fired", route=schedule.route, key=schedule.key, message_id=schedule.message_id)
            else:  # still pending: the next poll sends it again, under the same message id
                log.warning("schedule.not_sent", route=schedule.route, key=schedule.key, error=str(error))

    def _publish(self, schedule: DueSchedule, now: datetime) -> int:
        route = self.routes[schedule.route]
        return self.publisher().publish(
            exchange=naming.RETRY_EXCHANGE,
            routing_key=route.name,
            body=json.dumps(schedule.payload, ensure_ascii=False, sort_keys=True).encode("utf-8"),
            properties={
                "message_id": schedule.message_id,
                "correlation_id": schedule.message_id,
                "type": route.contract.message_type,
                "content_type": "application/json",
                "timestamp": int(now.timestamp()),
                "app_id": "gridbus",
            },
            headers={H.SOURCE_USER: route.source.system, H.ROUTE: route.name},
        )


class RetentionPurge(Part):
    """The retention purge, one chunk of at most ``chunk_rows`` rows per loop turn (and at most
    one every ``PAUSE_S``): started every ``interval_s``, it goes on turn after turn until nothing
    older than ``retention_s`` is left. A turn spends a few milliseconds on it, never the seconds
    that hundreds of thousands of rows in one transaction take. It runs on busy turns too: a
    worker under a steady load may never see an idle one."""

    #: Least time between two chunks, so a busy loop gives the purge a few percent.
    PAUSE_S = 0.05

    def __init__(self, idempotency: Idempotency, *, retention_s: float, interval_s: float, chunk_rows: int):
        self.idempotency = idempotency
        self.retention_s, self.interval_s, self.chunk_rows = retention_s, interval_s, chunk_rows
        self._last = -math.inf  # the first turn starts a purge
        self._purged: int | None = None  # rows removed so far by the purge under way (None: no purge)

    def on_turn(self) -> None:
        now = time.monotonic()
        if self._purged is None:
            if now - self._last < self.interval_s:
                return
            self._purged = 0
        elif now - self._last < self.PAUSE_S:
            return
        self._last = now
        removed = self.idempotency.purge_older_than(self.retention_s, limit=self.chunk_rows)
        self._purged += removed
        if removed < self.chunk_rows:  # nothing older left
            if self._purged:
                log.info("store.purged", rows=self._purged, retention_s=self.retention_s)
            self._purged = None
