"""The idempotency and state store: what took effect, what was superseded, what crashed.

SQLite (``sqlite:///path``) for one process; PostgreSQL (``postgresql://...``) when several
workers share the work. Both speak the same SQL here; the few differences are parameters
of the class below, not two implementations.

Tables
- effects(route, message_id, step): a step's effect was confirmed by its target.
- outcomes(route, message_id, outcome): the message is finished (delivered or superseded).
- revisions(route, key, revision, message_id): newest revision accepted per business key.
- attempts(route, message_id, starts): processing starts of a redelivered message (poison guard).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

_SCHEMA = [
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
    "CREATE INDEX IF NOT EXISTS effects_message ON effects (message_id)",
    "CREATE INDEX IF NOT EXISTS outcomes_message ON outcomes (message_id)",
    "CREATE INDEX IF NOT EXISTS outcomes_at ON outcomes (at)",
]

_CLAIM_REVISION = """
INSERT INTO revisions (route, key, revision, message_id, at) VALUES ({p}, {p}, {p}, {p}, {p})
ON CONFLICT (route, key) DO UPDATE SET revision = excluded.revision, message_id = excluded.message_id, at = excluded.at
WHERE revisions.revision < excluded.revision"""

_BEGIN_ATTEMPT = """
INSERT INTO attempts (route, message_id, starts, at) VALUES ({p}, {p}, 1, {p})
ON CONFLICT (route, message_id) DO UPDATE SET starts = attempts.starts + 1, at = excluded.at"""


class Store:
    """Thread-safe for one process; for several processes use PostgreSQL."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.RLock()
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._p = "?"
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self._conn = psycopg.connect(url, autocommit=True)
            self._p = "%s"
        else:
            raise ValueError(f"GRIDBUS_STORE_URL must start with sqlite:/// or postgresql://, got {url!r}")
        with self.transaction() as cur:
            if self._p == "%s":  # PostgreSQL: workers starting together must not race on CREATE TABLE
                cur.execute("SELECT pg_advisory_xact_lock(7471990214)")
            for statement in _SCHEMA:
                cur.execute(statement)

    def _sql(self, template: str) -> str:
        return template.replace("{p}", self._p)

    @contextmanager
    def transaction(self) -> Iterator:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _one(self, sql: str, params: tuple):
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self._sql(sql), params)
                return cur.fetchall()
            finally:
                cur.close()

    # -- reads ---------------------------------------------------------------------------

    def outcome(self, route: str, message_id: str) -> str | None:
        rows = self._one("SELECT outcome FROM outcomes WHERE route = {p} AND message_id = {p}", (route, message_id))
        return rows[0][0] if rows else None

    def steps_done(self, route: str, message_id: str) -> set[str]:
        rows = self._one("SELECT step FROM effects WHERE route = {p} AND message_id = {p}", (route, message_id))
        return {r[0] for r in rows}

    def lookup(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str | None, set[str]]]:
        """Outcome and recorded steps of many (route, message_id) pairs in two queries."""
        keys = set(keys)
        found: dict[tuple[str, str], tuple[str | None, set[str]]] = {k: (None, set()) for k in keys}
        ids = sorted({mid for _, mid in keys})
        if not ids:
            return found
        marks = ", ".join([self._p] * len(ids))
        for route, mid, outcome in self._one(f"SELECT route, message_id, outcome FROM outcomes WHERE message_id IN ({marks})", tuple(ids)):
            if (route, mid) in found:
                found[(route, mid)] = (outcome, found[(route, mid)][1])
        for route, mid, step in self._one(f"SELECT route, message_id, step FROM effects WHERE message_id IN ({marks})", tuple(ids)):
            if (route, mid) in found:
                found[(route, mid)][1].add(step)
        return found

    def latest_revision(self, route: str, key: str) -> int | None:
        rows = self._one("SELECT revision FROM revisions WHERE route = {p} AND key = {p}", (route, key))
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
        with self.transaction() as cur:
            if effects:
                cur.executemany(
                    self._sql(
                        "INSERT INTO effects (route, message_id, step, at) VALUES ({p}, {p}, {p}, {p}) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    [(*e, now) for e in effects],
                )
            if outcomes:
                cur.executemany(
                    self._sql(
                        "INSERT INTO outcomes (route, message_id, outcome, at) VALUES ({p}, {p}, {p}, {p}) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    [(*o, now) for o in outcomes],
                )

    def claim_revision(self, route: str, key: str, revision: int, message_id: str) -> bool:
        """Accept ``revision`` for ``key`` unless a newer or equal one from another message is known.

        Atomic, so two workers racing on one key cannot both win with stale revisions. The same
        message claiming again (a retry) is accepted.
        """
        with self.transaction() as cur:
            cur.execute(self._sql(_CLAIM_REVISION), (route, key, revision, message_id, time.time()))
            cur.execute(
                self._sql("SELECT revision, message_id FROM revisions WHERE route = {p} AND key = {p}"), (route, key)
            )
            held_revision, held_by = cur.fetchone()
        return held_revision == revision and held_by == message_id

    def begin_attempt(self, route: str, message_id: str) -> int:
        """Count one more processing start of a redelivered message; returns the count so far."""
        with self.transaction() as cur:
            cur.execute(self._sql(_BEGIN_ATTEMPT), (route, message_id, time.time()))
            cur.execute(
                self._sql("SELECT starts FROM attempts WHERE route = {p} AND message_id = {p}"), (route, message_id)
            )
            return cur.fetchone()[0]

    def end_attempt(self, route: str, message_id: str) -> None:
        """The redelivered message reached an outcome: it is no poison suspect any more."""
        with self.transaction() as cur:
            cur.execute(self._sql("DELETE FROM attempts WHERE route = {p} AND message_id = {p}"), (route, message_id))

    def purge_older_than(self, seconds: float) -> int:
        """Forget processed ids older than the retention; returns rows removed."""
        cutoff = time.time() - seconds
        removed = 0
        with self.transaction() as cur:
            for table in ("effects", "outcomes", "attempts"):
                cur.execute(self._sql(f"DELETE FROM {table} WHERE at < {{p}}"), (cutoff,))
                removed += max(cur.rowcount, 0)
        return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()

