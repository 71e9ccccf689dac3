"""The trace journal: the history of each business object that ``gridbus trace KEY`` shows.

Table
- journal(seq, at, key, event, route, message_id, detail): one line of a key's history, in
  the order written (``seq``). The processed-id purge leaves it alone; the journal's own
  retention (``purge_older_than``, GRIDBUS_JOURNAL_RETENTION_DAYS) removes old lines.

The worker appends a message's outcome and the outputs it sent; a decision's state changes and
the schedules it set, and a schedule firing, are journalled inside the commit that makes them
(``write`` takes the caller's cursor).
"""

from __future__ import annotations

from typing import Iterable

from gridbus.workers.store.db import Database

#: (at, key, event, route, message_id, detail): ``at`` in seconds since the epoch
JournalRow = tuple[float, str, str, str, str, str]

_INSERT = "INSERT INTO journal (at, key, event, route, message_id, detail) VALUES ({p}, {p}, {p}, {p}, {p}, {p})"


class Journal:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS journal (
            seq {serial}, at DOUBLE PRECISION NOT NULL, key TEXT NOT NULL, event TEXT NOT NULL,
            route TEXT NOT NULL, message_id TEXT NOT NULL, detail TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS journal_key ON journal (key, seq)",
        "CREATE INDEX IF NOT EXISTS journal_at ON journal (at)",
    )

    def __init__(self, db: Database):
        self._db = db

    def append(self, rows: Iterable[JournalRow]) -> None:
        """Append rows to the journal in a commit of their own."""
        rows = list(rows)
        if rows:
            with self._db.transaction() as cur:
                self.write(cur, rows)

    def write(self, cur, rows: Iterable[JournalRow]) -> None:
        """Append rows inside the caller's transaction (``cur``): they commit or roll back with it."""
        rows = list(rows)
        if rows:
            cur.executemany(self._db.sql(_INSERT), rows)

    def trace(self, key: str) -> list[tuple[float, str, str, str, str]]:
        """Everything journalled under ``key``, oldest first: (at, event, route, message_id, detail)."""
        return [
            tuple(r)
            for r in self._db.query(
                "SELECT at, event, route, message_id, detail FROM journal WHERE key = {p} ORDER BY seq", (key,)
            )
        ]

    def purge_older_than(self, cutoff: float, limit: int = 1000) -> int:
        """Remove at most ``limit`` lines written before ``cutoff`` (seconds since the epoch) in one
        short transaction; returns how many (fewer than ``limit``: none older is left)."""
        with self._db.transaction() as cur:
            cur.execute(self._db.purge_chunk("journal", limit), (cutoff,))
            return max(cur.rowcount, 0)
