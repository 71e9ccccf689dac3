"""The idempotency and state store: what took effect, what was superseded, what crashed.

SQLite (``sqlite:///path``) for one process; PostgreSQL (``postgresql://...``) when several
workers share the work. Both speak the same SQL here; the few differences are parameters
of the class below, not two implementations.

Tables
- effects(route, message_id, step): a step's effect was confirmed by its target.
- outcomes(route, message_id, outcome): the message is finished (delivered or superseded).
- revisions(route, key, revision, message_id): newest revision accepted per business key.
- attempts(route, message_id, starts): processing starts of a redelivered message (poison guard).
- records(kind, key, ref, version, data): business state of routes with a decision (JSON).
- decisions(route, message_id, result): a message was decided; the result its steps read.
- schedules(route, key, due_at, payload, state): durable schedules of internal messages.
- journal(seq, at, key, event, route, message_id, detail): the history ``gridbus trace`` shows.

Business state, schedules and the journal are kept; the retention purge forgets only the
idempotency tables.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from gridbus.contracts.state import Decision, Record

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
    """CREATE TABLE IF NOT EXISTS records (
        kind TEXT NOT NULL, key TEXT NOT NULL, ref TEXT, version BIGINT NOT NULL, data TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, key))""",
    """CREATE TABLE IF NOT EXISTS decisions (
        route TEXT NOT NULL, message_id TEXT NOT NULL, result TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (route, message_id))""",
    """CREATE TABLE IF NOT EXISTS schedules (
        route TEXT NOT NULL, key TEXT NOT NULL, due_at DOUBLE PRECISION NOT NULL, payload TEXT NOT NULL,
        keys TEXT NOT NULL, state TEXT NOT NULL, message_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (route, key))""",
    """CREATE TABLE IF NOT EXISTS journal (
        seq {serial}, at DOUBLE PRECISION NOT NULL, key TEXT NOT NULL, event TEXT NOT NULL,
        route TEXT NOT NULL, message_id TEXT NOT NULL, detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS records_ref ON records (kind, ref)",
    "CREATE INDEX IF NOT EXISTS schedules_due ON schedules (state, due_at)",
    "CREATE INDEX IF NOT EXISTS journal_key ON journal (key, seq)",
    "CREATE INDEX IF NOT EXISTS effects_at ON effects (at)",
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
        self._checkpointer: _Checkpointer | None = None
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            if path != ":memory:":
                self._checkpointer = _Checkpointer(path)
                self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
            self._p = "?"
            self._serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
            self._purge_chunk = "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE at < {{p}} LIMIT {n})"
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self._conn = psycopg.connect(url, autocommit=True)
            self._p = "%s"
            self._serial = "BIGSERIAL PRIMARY KEY"
            # A TID scan of the rows picked (``ctid IN (...)`` would scan the table), skipping
            # rows another worker's purge holds, so two workers' purges never wait for each other.
            self._purge_chunk = (
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY("
                "SELECT ctid FROM {table} WHERE at < {{p}} LIMIT {n} FOR UPDATE SKIP LOCKED))"
            )
        else:
            raise ValueError(f"GRIDBUS_STORE_URL must start with sqlite:/// or postgresql://, got {url!r}")
        with self.transaction() as cur:
            if self._p == "%s":  # PostgreSQL: workers starting together must not race on CREATE TABLE
                cur.execute("SELECT pg_advisory_xact_lock(7471990214)")
            for statement in _SCHEMA:
                cur.execute(statement.replace("{serial}", self._serial))

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
        """Outcome and recorded steps of many (route, message_id) pairs: two queries per route,
        each served by the table's primary key."""
        keys = set(keys)
        found: dict[tuple[str, str], tuple[str | None, set[str]]] = {k: (None, set()) for k in keys}
        by_route: dict[str, list[str]] = {}
        for route, mid in keys:
            by_route.setdefault(route, []).append(mid)
        for route, ids in by_route.items():
            marks = ", ".join([self._p] * len(ids))
            params = (route, *ids)
            for mid, outcome in self._one(
                f"SELECT message_id, outcome FROM outcomes WHERE route = {self._p} AND message_id IN ({marks})", params
            ):
                found[(route, mid)] = (outcome, found[(route, mid)][1])
            for mid, step in self._one(
                f"SELECT message_id, step FROM effects WHERE route = {self._p} AND message_id IN ({marks})", params
            ):
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

    #: The idempotency tables the retention purge forgets, in the order it empties them.
    PURGED_TABLES = ("effects", "outcomes", "attempts")

    def purge_older_than(self, seconds: float, limit: int | None = None) -> int:
        """Forget processed ids older than the retention, at most ``limit`` rows in one short
        transaction (all of them when None); returns rows removed. Fewer than ``limit`` removed
        means nothing older is left."""
        cutoff = time.time() - seconds
        removed = 0
        with self.transaction() as cur:
            for table in self.PURGED_TABLES:
                if limit is None:
                    cur.execute(self._sql(f"DELETE FROM {table} WHERE at < {{p}}"), (cutoff,))
                else:
                    if removed >= limit:
                        break
                    cur.execute(self._sql(self._purge_chunk.format(table=table, n=int(limit - removed))), (cutoff,))
                removed += max(cur.rowcount, 0)
        return removed

    # -- business state, decisions, schedules, journal --------------------------------------

    def state(self) -> "StateView":
        """A read view for one decision; it remembers the versions it read."""
        return StateView(self)

    def get_record(self, kind: str, key: str) -> Record | None:
        rows = self._one(
            "SELECT kind, key, ref, version, data FROM records WHERE kind = {p} AND key = {p}", (kind, key)
        )
        return _record(rows[0]) if rows else None

    def find_records(self, kind: str, *, ref: str | None = None, key_prefix: str | None = None) -> list[Record]:
        sql, params = "SELECT kind, key, ref, version, data FROM records WHERE kind = {p}", [kind]
        if ref is not None:
            sql += " AND ref = {p}"
            params.append(ref)
        if key_prefix is not None:
            sql += " AND substr(key, 1, {p}) = {p}"
            params += [len(key_prefix), key_prefix]
        return [_record(r) for r in self._one(sql + " ORDER BY key", tuple(params))]

    def decision(self, route: str, message_id: str) -> dict | None:
        """The recorded result of deciding this message, or None when it was not decided yet."""
        rows = self._one("SELECT result FROM decisions WHERE route = {p} AND message_id = {p}", (route, message_id))
        return json.loads(rows[0][0]) if rows else None

    def commit_decision(
        self, route: str, message_id: str, decision: Decision, read: dict[tuple[str, str], int], now: datetime
    ) -> bool:
        """Commit a decision with everything it writes; False (nothing written) when a record it
        read changed meanwhile or the message was decided by another worker."""
        at = now.timestamp()
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN")
            try:
                if not self._apply_decision(cur, route, message_id, decision, read, at):
                    cur.execute("ROLLBACK")
                    return False
                cur.execute("COMMIT")
                return True
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def _apply_decision(self, cur, route, message_id, decision: Decision, read, at: float) -> bool:
        sql = self._sql
        cur.execute(
            sql("INSERT INTO decisions (route, message_id, result, at) VALUES ({p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"),
            (route, message_id, _json(decision.result), at),
        )
        if cur.rowcount != 1:
            return False
        written = set()
        for put in decision.puts:
            version = read.get((put.kind, put.key))
            data = _json(put.data)
            if version is None:  # written without being read: last writer wins
                cur.execute(
                    sql(
                        "INSERT INTO records (kind, key, ref, version, data, at) VALUES ({p}, {p}, {p}, 1, {p}, {p}) "
                        "ON CONFLICT (kind, key) DO UPDATE SET ref = excluded.ref, data = excluded.data, "
                        "at = excluded.at, version = records.version + 1"
                    ),
                    (put.kind, put.key, put.ref, data, at),
                )
            elif version == 0:  # read as absent: must still be absent
                cur.execute(
                    sql(
                        "INSERT INTO records (kind, key, ref, version, data, at) VALUES ({p}, {p}, {p}, 1, {p}, {p}) "
                        "ON CONFLICT DO NOTHING"
                    ),
                    (put.kind, put.key, put.ref, data, at),
                )
            else:
                cur.execute(
                    sql(
                        "UPDATE records SET ref = {p}, data = {p}, at = {p}, version = version + 1 "
                        "WHERE kind = {p} AND key = {p} AND version = {p}"
                    ),
                    (put.ref, data, at, put.kind, put.key, version),
                )
            if cur.rowcount != 1:
                return False
            written.add((put.kind, put.key))
        for (kind, key), version in read.items():  # what was read and not written must be unchanged
            if (kind, key) in written:
                continue
            cur.execute(sql("SELECT version FROM records WHERE kind = {p} AND key = {p}"), (kind, key))
            row = cur.fetchone()
            if (row[0] if row else 0) != version:
                return False
        for schedule in decision.schedules:
            cur.execute(
                sql(
                    "INSERT INTO schedules (route, key, due_at, payload, keys, state, message_id, at) "
                    "VALUES ({p}, {p}, {p}, {p}, {p}, 'pending', {p}, {p}) ON CONFLICT (route, key) DO UPDATE SET "
                    "due_at = excluded.due_at, payload = excluded.payload, keys = excluded.keys, state = 'pending', "
                    "message_id = excluded.message_id, at = excluded.at"
                ),
                (
                    schedule.route, schedule.key, schedule.due_at.timestamp(), _json(schedule.payload),
                    _json(list(schedule.trace_keys)), schedule_message_id(schedule.route, schedule.key, message_id), at,
                ),
            )
        for cancel in decision.cancels:
            cur.execute(
                sql("UPDATE schedules SET state = 'canceled', at = {p} WHERE route = {p} AND key = {p} AND state = 'pending'"),
                (at, cancel.route, cancel.key),
            )
        rows = [(at, key, "state", route, message_id, change.what) for change in decision.changes for key in change.keys]
        rows += [
            (at, key, "scheduled", route, message_id, f"{s.route} due {s.due_at.isoformat()}")
            for s in decision.schedules for key in s.trace_keys
        ]
        if rows:
            cur.executemany(sql(_JOURNAL_INSERT), rows)
        return True

    def due_schedules(self, routes: Iterable[str], now: datetime, limit: int = 100) -> list["DueSchedule"]:
        routes = sorted(set(routes))
        if not routes:
            return []
        marks = ", ".join([self._p] * len(routes))
        rows = self._one(
            f"SELECT route, key, due_at, payload, keys, message_id FROM schedules WHERE state = 'pending' "
            f"AND due_at <= {self._p} AND route IN ({marks}) ORDER BY due_at LIMIT {int(limit)}",
            (now.timestamp(), *routes),
        )
        return [_due(r) for r in rows]

    def pending_schedules(self) -> list["DueSchedule"]:
        rows = self._one(
            "SELECT route, key, due_at, payload, keys, message_id FROM schedules WHERE state = 'pending' ORDER BY due_at", ()
        )
        return [_due(r) for r in rows]

    def mark_fired(self, schedule: "DueSchedule", now: datetime) -> None:
        """The schedule's message was confirmed by the broker: it is done (unless reset meanwhile)."""
        at = now.timestamp()
        keys = schedule.trace_keys
        with self.transaction() as cur:
            cur.execute(
                self._sql(
                    "UPDATE schedules SET state = 'fired', at = {p} WHERE route = {p} AND key = {p} "
                    "AND message_id = {p} AND state = 'pending'"
                ),
                (at, schedule.route, schedule.key, schedule.message_id),
            )
            if cur.rowcount == 1 and keys:
                cur.executemany(
                    self._sql(_JOURNAL_INSERT),
                    [(at, key, "fired", schedule.route, schedule.message_id, f"schedule {schedule.key} fell due") for key in keys],
                )

    def journal(self, rows: Iterable[tuple[float, str, str, str, str, str]]) -> None:
        """Append (at, key, event, route, message_id, detail) rows to the trace journal."""
        rows = list(rows)
        if rows:
            with self.transaction() as cur:
                cur.executemany(self._sql(_JOURNAL_INSERT), rows)

    def trace(self, key: str) -> list[tuple[float, str, str, str, str]]:
        """Everything journalled under ``key``, oldest first: (at, event, route, message_id, detail)."""
        return [
            tuple(r)
            for r in self._one(
                "SELECT at, event, route, message_id, detail FROM journal WHERE key = {p} ORDER BY seq", (key,)
            )
        ]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()


class _Checkpointer:
    """Copies SQLite's write-ahead log into the database from a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that fills the log past 1,000 pages and
    waits for the disk (an fsync of the database); with message ids as keys nearly every commit
    touches new pages, so that was every few batches, in the worker's own time. Here a second
    connection checkpoints ``PASSIVE``ly (never blocking the writer) every ``interval_s`` and on
    stop, and truncates the log when nothing else uses it.
    """

    def __init__(self, path: str, interval_s: float = 0.5):
        self._path = path
        self.interval_s = interval_s
        self.copied_frames = 0  # log frames copied into the database so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gridbus-store-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(self.interval_s):
                self._checkpoint(conn, "PASSIVE")
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection, mode: str) -> None:
        try:
            _busy, _log_frames, copied = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        except sqlite3.Error:  # busy or closing: the next round copies it
            return
        self.copied_frames += max(copied, 0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)



_JOURNAL_INSERT = "INSERT INTO journal (at, key, event, route, message_id, detail) VALUES ({p}, {p}, {p}, {p}, {p}, {p})"

#: Namespace of the message ids of schedules that fell due: one id per schedule as set by one
#: decision, so firing twice (a crash between sending and marking) is recognised as a repeat.
_SCHEDULE_NAMESPACE = __import__("uuid").UUID("6f0d3c52-2b7e-4c1e-9a55-3c1d8e0b7a41")


def schedule_message_id(route: str, key: str, decided_by: str) -> str:
    import uuid

    return str(uuid.uuid5(_SCHEDULE_NAMESPACE, f"{route}/{key}/{decided_by}"))


@dataclass(frozen=True)
class DueSchedule:
    route: str
    key: str
    due_at: float
    payload: dict
    trace_keys: tuple[str, ...]
    message_id: str


class StateView:
    """``contracts.state.State`` over the store, remembering each record's version as read."""

    def __init__(self, store: Store):
        self._store = store
        self.read: dict[tuple[str, str], int] = {}

    def get(self, kind: str, key: str) -> Record | None:
        record = self._store.get_record(kind, key)
        self.read.setdefault((kind, key), record.version if record else 0)
        return record

    def find(self, kind: str, *, ref: str | None = None, key_prefix: str | None = None) -> list[Record]:
        records = self._store.find_records(kind, ref=ref, key_prefix=key_prefix)
        for record in records:
            self.read.setdefault((kind, record.key), record.version)
        return records


def _record(row) -> Record:
    kind, key, ref, version, data = row
    return Record(kind=kind, key=key, ref=ref, version=int(version), data=json.loads(data))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _due(row) -> DueSchedule:
    route, key, due_at, payload, keys, message_id = row
    return DueSchedule(route, key, float(due_at), json.loads(payload), tuple(json.loads(keys)), message_id)
