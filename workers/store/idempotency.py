"""What took effect, what finished, which revision is newest, what keeps crashing.

Tables
- effects(route, message_id, step): a step's effect was confirmed by its target.
- outcomes(route, message_id, outcome): the message is finished (delivered or superseded).
- revisions(route, key, revision, message_id): newest revision accepted per business key.
- attempts(route, message_id, starts): processing starts of a redelivered message (poison guard).

The retention purge forgets effects, outcomes and attempts older than the retention
(``PURGED_TABLES``): a message id older than that is not recognised as a repeat any more (README,
Sizing the store). Revisions are kept: one row per business key, they do not grow with traffic.
"""

from __future__ import annotations

import time
from typing import Iterable

from gridbus.workers.store.db import Database

_RECORD_EFFECT = "INSERT INTO effects (route, message_id, step, at) VALUES ({p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
_RECORD_OUTCOME = (
    "INSERT INTO outcomes (route, message_id, outcome, at) VALUES ({p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
)

_CLAIM_REVISION = """
INSERT INTO revisions (route, key, revision, message_id, at) VALUES ({p}, {p}, {p}, {p}, {p})
ON CONFLICT (route, key) DO UPDATE SET revision = excluded.revision, message_id = excluded.message_id, at = excluded.at
WHERE revisions.revision < excluded.revision"""

_BEGIN_ATTEMPT = """
INSERT INTO attempts (route, message_id, starts, at) VALUES ({p}, {p}, 1, {p})
ON CONFLICT (route, message_id) DO UPDATE SET starts = attempts.starts + 1, at = excluded.at"""


class Idempotency:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS effects (
            route TEXT NOT NULL, message_id TEXT NOT NULL, step TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (route, message_id, step))""",
        """CREATE TABLE IF NOT EXISTS outcomes (
            route TEXT NOT NULL, message_id TEXT NOT NULL, outcome TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (route, message_id))""",
        """CREATE TABLE IF NOT EXISTS revisions (
            route TEXT NOT NULL, key TEXT NOT NULL, revision BIGINT NOT NULL, message_id TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL, PRIMARY KEY (route, key))""",
        """CREATE TABLE IF NOT EXISTS attempts (
            route TEXT NOT NULL, message_id TEXT NOT NULL, starts INTEGER NOT NULL, at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (route, message_id))""",
        "CREATE INDEX IF NOT EXISTS effects_at ON effects (at)",
        "CREATE INDEX IF NOT EXISTS outcomes_at ON outcomes (at)",
    )

    #: The tables the retention purge forgets, in the order it empties them.
    PURGED_TABLES = ("effects", "outcomes", "attempts")

    def __init__(self, db: Database):
        self._db = db

    # -- reads ---------------------------------------------------------------------------

    def outcome(self, route: str, message_id: str) -> str | None:
        rows = self._db.query("SELECT outcome FROM outcomes WHERE route = {p} AND message_id = {p}", (route, message_id))
        return rows[0][0] if rows else None

    def steps_done(self, route: str, message_id: str) -> set[str]:
        rows = self._db.query("SELECT step FROM effects WHERE route = {p} AND message_id = {p}", (route, message_id))
        return {r[0] for r in rows}

    def lookup(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str | None, set[str]]]:
        """Outcome and recorded steps of many (route, message_id) pairs: two queries per route,
        each served by the table's primary key."""
        keys = set(keys)
        found: dict[tuple[str, str], tuple[str | None, set[str]]] = {k: (None, set()) for k in keys}
        by_route: dict[str, list[str]] = {}
        for route, mid in keys:
            by_route.setdefault(route, []).append(mid)
        for route, ids in by_route.items():
            marks = self._db.marks(len(ids))
            params = (route, *ids)
            for mid, outcome in self._db.query(
                f"SELECT message_id, outcome FROM outcomes WHERE route = {{p}} AND message_id IN ({marks})", params
            ):
                found[(route, mid)] = (outcome, found[(route, mid)][1])
            for mid, step in self._db.query(
                f"SELECT message_id, step FROM effects WHERE route = {{p}} AND message_id IN ({marks})", params
            ):
                found[(route, mid)][1].add(step)
        return found

    def latest_revision(self, route: str, key: str) -> int | None:
        rows = self._db.query("SELECT revision FROM revisions WHERE route = {p} AND key = {p}", (route, key))
        return rows[0][0] if rows else None

    # -- writes --------------------------------------------------------------------------

    def record(
        self,
        effects: Iterable[tuple[str, str, str]] = (),
        outcomes: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Record confirmed effects (route, message_id, step) and finished messages in one commit."""
        now = time.time()
        effects, outcomes = list(effects), list(outcomes)
        if not effects and not outcomes:
            return
        with self._db.transaction() as cur:
            if effects:
                cur.executemany(self._db.sql(_RECORD_EFFECT), [(*e, now) for e in effects])
            if outcomes:
                cur.executemany(self._db.sql(_RECORD_OUTCOME), [(*o, now) for o in outcomes])

    def claim_revision(self, route: str, key: str, revision: int, message_id: str) -> bool:
        """Accept ``revision`` for ``key`` unless a newer or equal one from another message is known.

        Atomic, so two workers racing on one key cannot both win with stale revisions. The same
        message claiming again (a retry) is accepted.
        """
        with self._db.transaction() as cur:
            cur.execute(self._db.sql(_CLAIM_REVISION), (route, key, revision, message_id, time.time()))
            cur.execute(
                self._db.sql("SELECT revision, message_id FROM revisions WHERE route = {p} AND key = {p}"), (route, key)
            )
            held_revision, held_by = cur.fetchone()
        return held_revision == revision and held_by == message_id

    def begin_attempt(self, route: str, message_id: str) -> int:
        """Count one more processing start of a redelivered message; returns the count so far."""
        with self._db.transaction() as cur:
            cur.execute(self._db.sql(_BEGIN_ATTEMPT), (route, message_id, time.time()))
            cur.execute(
                self._db.sql("SELECT starts FROM attempts WHERE route = {p} AND message_id = {p}"), (route, message_id)
            )
            return cur.fetchone()[0]

    def end_attempt(self, route: str, message_id: str) -> None:
        """The redelivered message reached an outcome: it is no poison suspect any more."""
        with self._db.transaction() as cur:
            cur.execute(self._db.sql("DELETE FROM attempts WHERE route = {p} AND message_id = {p}"), (route, message_id))

    def purge_older_than(self, seconds: float, limit: int | None = None) -> int:
        """Forget processed ids older than the retention, at most ``limit`` rows in one short
        transaction (all of them when None); returns rows removed. Fewer than ``limit`` removed
        means nothing older is left."""
        cutoff = time.time() - seconds
        removed = 0
        with self._db.transaction() as cur:
            for table in self.PURGED_TABLES:
                if limit is None:
                    cur.execute(self._db.sql(f"DELETE FROM {table} WHERE at < {{p}}"), (cutoff,))
                else:
                    if removed >= limit:
                        break
                    cur.execute(self._db.purge_chunk(table, limit - removed), (cutoff,))
                removed += max(cur.rowcount, 0)
        return removed
