"""The audit trail: who replayed, edited, purged, restored or changed the retention of what.

Table
- audit(seq, at, who, action, what, count, selection, detail): one row per operator action (or
  the worker's retention), in the order written. ``selection`` is the filter the action was given
  (JSON), ``detail`` what else it needs to be understood (JSON: a replay's id and rate, an edit's
  two bodies and their diff). Rows are only ever appended: the store offers no update or delete,
  and a trigger refuses them in the database too. The retention purge leaves it alone.

An action's row is written in the same transaction as the change it records (``write`` takes the
caller's cursor), so the trail never shows what did not happen, nor misses what did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from gridbus.workers.store.db import POSTGRESQL, Database, to_json

#: What an audit row can record.
ACTIONS = ("replay", "edit-replay", "purge", "restore", "remove", "retention", "note")

_INSERT = (
    "INSERT INTO audit (at, who, action, what, count, selection, detail) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})"
)

_SQLITE_GUARD = tuple(
    f"""CREATE TRIGGER IF NOT EXISTS audit_append_only_{verb.lower()} BEFORE {verb} ON audit
        BEGIN SELECT RAISE(ABORT, 'audit rows are append-only'); END"""
    for verb in ("UPDATE", "DELETE")
)
_POSTGRESQL_GUARD = (
    """CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN RAISE EXCEPTION 'audit rows are append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
        FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
)


@dataclass(frozen=True)
class AuditEntry:
    """One action. who: the operator (on the CLI the OS user); at: seconds since the epoch;
    what: one line a person reads (``replayed 12 dead letters of tc.x``); count: how many
    letters it touched; selection: the filter it was given; detail: anything else, as JSON."""

    at: float
    who: str
    action: str
    what: str
    count: int = 0
    selection: dict | None = None
    detail: dict | None = None


@dataclass(frozen=True)
class AuditRow(AuditEntry):
    seq: int = 0


class Audit:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS audit (
            seq {serial}, at DOUBLE PRECISION NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
            what TEXT NOT NULL, count INTEGER NOT NULL, selection TEXT NOT NULL, detail TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
    )

    def __init__(self, db: Database):
        self._db = db

    def guard(self) -> tuple[str, ...]:
        """The statements that make the table refuse UPDATE and DELETE, in this database's SQL."""
        return _POSTGRESQL_GUARD if self._db.dialect is POSTGRESQL else _SQLITE_GUARD

    def append(self, entry: AuditEntry) -> None:
        """Record ``entry`` in a commit of its own."""
        with self._db.transaction() as cur:
            self.write(cur, entry)

    def write(self, cur, entry: AuditEntry) -> None:
        """Record ``entry`` inside the caller's transaction: it commits with the change it records."""
        if entry.action not in ACTIONS:
            raise ValueError(f"unknown audit action {entry.action!r}; known: {', '.join(ACTIONS)}")
        cur.execute(
            self._db.sql(_INSERT),
            (
                entry.at, entry.who, entry.action, entry.what, int(entry.count),
                to_json(entry.selection or {}), to_json(entry.detail or {}),
            ),
        )

    def rows(self, *, action: str | None = None, since: float | None = None, limit: int = 100) -> list[AuditRow]:
        """The newest ``limit`` rows, newest first, optionally of one action and from ``since``."""
        where, params = ["1 = 1"], []
        if action is not None:
            where.append("action = {p}")
            params.append(action)
        if since is not None:
            where.append("at >= {p}")
            params.append(since)
        found = self._db.query(
            "SELECT seq, at, who, action, what, count, selection, detail FROM audit "
            f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT {int(limit)}",
            tuple(params),
        )
        return [_row(r) for r in found]

    def last(self, action: str) -> AuditRow | None:
        """The newest row of ``action``, if any (the worker compares its retention with it)."""
        found = self.rows(action=action, limit=1)
        return found[0] if found else None


def _row(r) -> AuditRow:
    seq, at, who, action, what, count, selection, detail = r
    return AuditRow(
        at=float(at), who=who, action=action, what=what, count=int(count),
        selection=json.loads(selection), detail=json.loads(detail), seq=int(seq),
    )
