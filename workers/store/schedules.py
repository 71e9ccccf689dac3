"""Durable schedules of internal messages: set by decisions, fired by the worker's clock.

Table
- schedules(route, key, due_at, payload, keys, state, message_id): one schedule per (route, key)
  of an internal route, ``pending`` until its message is confirmed (``fired``) or a decision
  cancels it (``canceled``); ``keys`` are the trace keys it is journalled under. The retention
  purge leaves it alone.

Decisions set and cancel schedules inside their own commit (``write`` takes the caller's
cursor), so a schedule exists exactly when the decision that set it does.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

from gridbus.contracts.state import Cancel, Schedule
from gridbus.workers.store.db import Database, to_json
from gridbus.workers.store.journal import Journal

#: Namespace of the message ids of schedules that fell due: one id per schedule as set by one
#: decision, so firing twice (a crash between sending and marking) is recognised as a repeat.
_SCHEDULE_NAMESPACE = uuid.UUID("6f0d3c52-2b7e-4c1e-9a55-3c1d8e0b7a41")

_SET = (
    "INSERT INTO schedules (route, key, due_at, payload, keys, state, message_id, at) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, 'pending', {p}, {p}) ON CONFLICT (route, key) DO UPDATE SET "
    "due_at = excluded.due_at, payload = excluded.payload, keys = excluded.keys, state = 'pending', "
    "message_id = excluded.message_id, at = excluded.at"
)
_CANCEL = "UPDATE schedules SET state = 'canceled', at = {p} WHERE route = {p} AND key = {p} AND state = 'pending'"
_FIRED = (
    "UPDATE schedules SET state = 'fired', at = {p} WHERE route = {p} AND key = {p} "
    "AND message_id = {p} AND state = 'pending'"
)
_COLUMNS = "route, key, due_at, payload, keys, message_id"


def schedule_message_id(route: str, key: str, decided_by: str) -> str:
    """The message id a schedule fires with: the same for as long as one decision's setting stands."""
    return str(uuid.uuid5(_SCHEDULE_NAMESPACE, f"{route}/{key}/{decided_by}"))


@dataclass(frozen=True)
class DueSchedule:
    """A pending schedule as stored; ``due_at`` in seconds since the epoch."""

    route: str
    key: str
    due_at: float
    payload: dict
    trace_keys: tuple[str, ...]
    message_id: str


class Schedules:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS schedules (
            route TEXT NOT NULL, key TEXT NOT NULL, due_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
            keys TEXT NOT NULL, state TEXT NOT NULL, message_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (route, key))""",
        "CREATE INDEX IF NOT EXISTS schedules_due ON schedules (state, due_at)",
    )

    def __init__(self, db: Database, journal: Journal):
        self._db = db
        self._journal = journal

    def due(self, routes: Iterable[str], now: datetime, limit: int = 100) -> list[DueSchedule]:
        """Pending schedules of ``routes`` due by ``now``, soonest first, at most ``limit``."""
        routes = sorted(set(routes))
        if not routes:
            return []
        rows = self._db.query(
            f"SELECT {_COLUMNS} FROM schedules WHERE state = 'pending' "
            f"AND due_at <= {{p}} AND route IN ({self._db.marks(len(routes))}) ORDER BY due_at LIMIT {int(limit)}",
            (now.timestamp(), *routes),
        )
        return [_due(r) for r in rows]

    def pending(self) -> list[DueSchedule]:
        """Every pending schedule, soonest first."""
        rows = self._db.query(f"SELECT {_COLUMNS} FROM schedules WHERE state = 'pending' ORDER BY due_at")
        return [_due(r) for r in rows]

    def mark_fired(self, schedule: DueSchedule, now: datetime) -> None:
        """The schedule's message was confirmed by the broker: it is done (unless reset meanwhile)."""
        at = now.timestamp()
        with self._db.transaction() as cur:
            cur.execute(self._db.sql(_FIRED), (at, schedule.route, schedule.key, schedule.message_id))
            if cur.rowcount == 1:
                self._journal.write(cur, [
                    (at, key, "fired", schedule.route, schedule.message_id, f"schedule {schedule.key} fell due")
                    for key in schedule.trace_keys
                ])

    def write(
        self, cur, route: str, message_id: str, sets: Iterable[Schedule], cancels: Iterable[Cancel], at: float
    ) -> None:
        """Set and cancel the schedules message ``message_id`` of ``route`` decided, inside the
        caller's transaction (``cur``), journalling each schedule set under its trace keys."""
        sets = list(sets)
        for schedule in sets:
            cur.execute(
                self._db.sql(_SET),
                (
                    schedule.route, schedule.key, schedule.due_at.timestamp(), to_json(schedule.payload),
                    to_json(list(schedule.trace_keys)), schedule_message_id(schedule.route, schedule.key, message_id), at,
                ),
            )
        for cancel in cancels:
            cur.execute(self._db.sql(_CANCEL), (at, cancel.route, cancel.key))
        self._journal.write(cur, [
            (at, key, "scheduled", route, message_id, f"{s.route} due {s.due_at.isoformat()}")
            for s in sets for key in s.trace_keys
        ])


def _due(row) -> DueSchedule:
    route, key, due_at, payload, keys, message_id = row
    return DueSchedule(route, key, float(due_at), json.loads(payload), tuple(json.loads(keys)), message_id)
