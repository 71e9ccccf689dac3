"""The one database the store's table families share: SQLite or PostgreSQL, from the URL.

SQLite (``sqlite:///path``) for one process; PostgreSQL (``postgresql://...``) when several
workers share the work. Both speak the same SQL, written with ``{p}`` for a parameter; the few
differences (the placeholder, an auto-numbered key, how the purge picks a chunk of rows) are a
``Dialect``, not two implementations. Each table family declares its own tables; the database
creates them all in one transaction when the store opens.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator


@dataclass(frozen=True)
class Dialect:
    """What differs between the two databases in the store's SQL."""

    placeholder: str
    #: column type of an auto-numbered primary key (the journal's ``seq``)
    serial: str
    #: column type of raw bytes (a dead letter's body, kept byte for byte)
    blob: str
    #: DELETE of at most ``{n}`` rows of ``{table}`` older than ``{{p}}`` (``at < cutoff``)
    purge_chunk: str
    #: ``column`` + this: the column's value is one of a set given as one parameter (``set_param``)
    in_set: str
    #: ``column`` + this: the column's value is one the subquery ``{q}`` gives
    in_subquery: str = " IN ({q})"
    #: SELECT ``{columns}`` of the rows of ``{table}`` whose ``{key}`` is in a set (the first
    #: parameter, ``set_param``) and that meet ``{where}`` (the parameters after it)
    keyed: str = "SELECT {columns} FROM {table} WHERE {key} IN (SELECT value FROM json_each({{p}})) AND {where}"
    #: how a transaction starts
    begin: str = "BEGIN"


SQLITE = Dialect(
    placeholder="?",
    serial="INTEGER PRIMARY KEY AUTOINCREMENT",
    blob="BLOB",
    purge_chunk="DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE at < {{p}} LIMIT {n})",
    in_set=" IN (SELECT value FROM json_each({p}))",
    # The write lock from the start: a transaction that read first and then wrote would be refused
    # at once (SQLITE_BUSY, no waiting) while another process wrote; taken up front, it waits
    # (busy_timeout), so an operator's command can write while a worker runs.
    begin="BEGIN IMMEDIATE",
)

POSTGRESQL = Dialect(
    placeholder="%s",
    serial="BIGSERIAL PRIMARY KEY",
    blob="BYTEA",
    # A TID scan of the rows picked (``ctid IN (...)`` would scan the table), skipping rows
    # another worker's purge holds, so two workers' purges never wait for each other.
    purge_chunk=(
        "DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        "SELECT ctid FROM {table} WHERE at < {{p}} LIMIT {n} FOR UPDATE SKIP LOCKED))"
    ),
    in_set=" = ANY({p})",
    # The subquery's rows first, as an array, then the column's index: the planner cannot walk
    # the whole table in the column's order hoping to meet them (it did, before ANALYZE, for
    # the archive's search by business key: 1.5 s at 100,000 letters instead of 4 ms).
    in_subquery=" = ANY(ARRAY({q}))",
    # One index probe per key, whatever the planner estimates: ``key = ANY(array)`` over ten
    # thousand keys of a million-row table was planned as a parallel sequential scan (115 ms
    # where the probes take 40), and a plain lateral join is flattened into a hash join over
    # every row of the kind. ``OFFSET 0`` keeps the subquery a subquery: a probe per key.
    keyed=(
        "SELECT {columns} FROM unnest({{p}}::text[]) AS wanted(wanted_key) CROSS JOIN LATERAL "
        "(SELECT {columns} FROM {table} WHERE {key} = wanted.wanted_key AND {where} OFFSET 0) AS found"
    ),
)

#: Key of the PostgreSQL advisory lock held while creating the tables: workers starting
#: together must not race on CREATE TABLE.
_SCHEMA_LOCK = 7471990214


def to_json(value: Any) -> str:
    """A JSON column's text: compact, keys sorted, Chinese kept as it is (not ``\\u`` escapes)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class Database:
    """One connection, thread-safe for one process (a lock serialises its users); for several
    processes use PostgreSQL."""

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.RLock()
        #: SQLite on a file: the thread copying the write-ahead log into the database
        self.checkpointer: Checkpointer | None = None
        if url.startswith("sqlite:///"):
            path = url.removeprefix("sqlite:///")
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            if path != ":memory:":
                self.checkpointer = Checkpointer(path)
                self._conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
            self.dialect = SQLITE
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self._conn = psycopg.connect(url, autocommit=True)
            self.dialect = POSTGRESQL
        else:
            raise ValueError(f"GRIDBUS_STORE_URL must start with sqlite:/// or postgresql://, got {url!r}")

    def create_tables(self, schema: Iterable[str]) -> None:
        """Run the families' CREATE statements (``{serial}`` for an auto-numbered key, ``{blob}``
        for bytes) in one transaction; they say IF NOT EXISTS, so opening an existing store
        changes nothing."""
        with self.transaction() as cur:
            if self.dialect is POSTGRESQL:
                cur.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            for statement in schema:
                cur.execute(statement.replace("{serial}", self.dialect.serial).replace("{blob}", self.dialect.blob))

    def sql(self, template: str) -> str:
        """``template`` with each ``{p}`` replaced by this database's placeholder."""
        return template.replace("{p}", self.dialect.placeholder)

    def marks(self, n: int) -> str:
        """``n`` placeholders, comma-separated: the inside of an ``IN (...)``."""
        return ", ".join([self.dialect.placeholder] * n)

    def in_set(self, column: str) -> str:
        """``column`` is one of a set of values given as one parameter, ``set_param(values)``:
        one statement for ten thousand keys, with no limit on how many."""
        return column + self.dialect.in_set

    def keyed(self, columns: str, table: str, key: str, where: str) -> str:
        """A SELECT of ``columns`` from ``table`` for a set of ``key`` values, its first parameter
        (``set_param``), among the rows that meet ``where`` (the parameters after it): one
        statement for ten thousand keys, each found by the table's index on ``key``."""
        return self.sql(self.dialect.keyed.format(columns=columns, table=table, key=key, where=where))

    def in_subquery(self, column: str, query: str) -> str:
        """``column`` is one of the values ``query`` selects (a one-column subquery)."""
        return column + self.dialect.in_subquery.replace("{q}", query)

    def set_param(self, values: Iterable[str]) -> Any:
        """The parameter of ``in_set``: a JSON array for SQLite, a list (an array) for PostgreSQL."""
        values = list(values)
        return json.dumps(values, ensure_ascii=False) if self.dialect is SQLITE else values

    def purge_chunk(self, table: str, limit: int) -> str:
        """A DELETE of at most ``limit`` rows of ``table`` with ``at`` before its one parameter."""
        return self.sql(self.dialect.purge_chunk.format(table=table, n=int(limit)))

    @contextmanager
    def transaction(self) -> Iterator:
        """A cursor inside BEGIN ... COMMIT; an exception out of the block rolls it all back."""
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(self.dialect.begin)
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def query(self, template: str, params: tuple = ()) -> list:
        """All rows of one statement run on its own (``{p}`` placeholders)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self.sql(template), params)
                return cur.fetchall()
            finally:
                cur.close()

    def ping(self, wait_s: float) -> bool | None:
        """Whether the database answers a trivial query (for ``/readyz``); None when another
        user has held the connection for ``wait_s`` seconds already: in use, so not checked."""
        if not self._lock.acquire(timeout=wait_s):
            return None
        try:
            cur = self._conn.cursor()
            try:
                cur.execute("SELECT 1")
                cur.fetchall()
            finally:
                cur.close()
            return True
        except Exception:  # noqa: BLE001 - any failure means it does not answer
            return False
        finally:
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        if self.checkpointer is not None:
            self.checkpointer.stop()


class Checkpointer:
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
