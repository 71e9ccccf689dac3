"""Replays of archived dead letters: which letters a replay took on, and which it has sent.

Tables
- replays(replay_id, started_at, who, selection, rate, total, state, finished_at): one replay,
  ``running`` until every letter it took on was sent (``done``).
- replay_items(replay_id, seq, replays_before, sent_at): the letters it took on when it began,
  each with the letter's replay count then. A letter is sent by this replay once the broker
  confirmed its copy (``sent_at``, and the letter's ``replayed_at``, in one commit).

A replay's letters are fixed when it begins, so resuming it (``pending``) sends exactly those
not confirmed yet, whatever arrived in the archive since; a letter another replay sent meanwhile
(its replay count moved on) or that was purged is passed over, never sent twice by two replays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from gridbus.workers.store.audit import Audit, AuditEntry
from gridbus.workers.store.db import Database, to_json
from gridbus.workers.store.dead_letters import ArchivedLetter, DeadLetters, Selection, FULL_COLUMNS, archived_letter


@dataclass(frozen=True)
class ReplayProgress:
    """replay_id's letters: ``total`` taken on, ``sent`` confirmed, ``passed_over`` sent by
    another replay or purged since; ``rate`` in letters per second (0: as fast as the broker)."""

    replay_id: str
    who: str
    started_at: float
    selection: dict
    rate: float
    total: int
    sent: int
    passed_over: int
    state: str

    @property
    def left(self) -> int:
        return self.total - self.sent - self.passed_over


_PENDING_SQL = (
    "FROM replay_items i JOIN dead_letters d ON d.seq = i.seq WHERE i.replay_id = {p} AND i.sent_at IS NULL"
)


class Replays:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS replays (
            replay_id TEXT PRIMARY KEY, started_at DOUBLE PRECISION NOT NULL, who TEXT NOT NULL,
            selection TEXT NOT NULL, rate DOUBLE PRECISION NOT NULL, total INTEGER NOT NULL, state TEXT NOT NULL,
            finished_at DOUBLE PRECISION)""",
        """CREATE TABLE IF NOT EXISTS replay_items (
            replay_id TEXT NOT NULL, seq BIGINT NOT NULL, replays_before INTEGER NOT NULL,
            sent_at DOUBLE PRECISION, PRIMARY KEY (replay_id, seq))""",
        # a letter's replays (its page)
        "CREATE INDEX IF NOT EXISTS replay_items_seq ON replay_items (seq)",
    )

    def __init__(self, db: Database, letters: DeadLetters, audit: Audit):
        self._db = db
        self._letters = letters
        self._audit = audit

    def begin(self, replay_id: str, selection: Selection, who: str, rate: float, at: float) -> ReplayProgress:
        """Take on the letters of ``selection`` as replay ``replay_id`` (audited); if that replay
        exists already, nothing changes and its progress is returned (a resume)."""
        existing = self.progress(replay_id)
        if existing is not None:
            return existing
        with self._db.transaction() as cur:
            total = 0
            for part in _parts(selection):
                where, params = part.where(self._db)
                cur.execute(
                    self._db.sql(
                        "INSERT INTO replay_items (replay_id, seq, replays_before) "
                        f"SELECT {{p}}, seq, replays FROM dead_letters WHERE {where}"
                    ),
                    (replay_id, *params),
                )
                total += max(cur.rowcount, 0)
            cur.execute(
                self._db.sql(
                    "INSERT INTO replays (replay_id, started_at, who, selection, rate, total, state) "
                    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, 'running')"
                ),
                (replay_id, at, who, to_json(selection.as_dict()), float(rate), total),
            )
            self._audit.write(cur, AuditEntry(
                at, who, "replay", f"replay {replay_id} of {total} dead letter(s) at {_rate(rate)}", total,
                selection.as_dict(), {"replay_id": replay_id, "rate": rate},
            ))
        return self.progress(replay_id)

    def pending(self, replay_id: str, limit: int = 500, after: int = 0) -> list[ArchivedLetter]:
        """The next letters of the replay to send, oldest first: not confirmed yet, not purged,
        and not replayed by anyone since the replay began; ``after``: only letters numbered
        above it (the caller's last, so a long replay does not scan what it sent).

        Two index lookups, the replay's items and then their letters by number, rather than a
        join the planner may turn into a scan of the whole archive."""
        while True:
            items = self._db.query(
                "SELECT seq, replays_before FROM replay_items WHERE replay_id = {p} AND sent_at IS NULL "
                f"AND seq > {{p}} ORDER BY seq LIMIT {int(limit)}",
                (replay_id, int(after)),
            )
            if not items:
                return []
            before = {int(seq): int(replays) for seq, replays in items}
            rows = self._db.query(
                f"SELECT {FULL_COLUMNS} FROM dead_letters WHERE " + self._db.in_set("seq"),
                (self._db.set_param(list(before)),),
            )
            found = sorted((archived_letter(r) for r in rows), key=lambda x: x.seq)
            due = [x for x in found if x.deleted_at is None and x.replays == before[x.seq]]
            if due:
                return due
            after = max(before)  # every one of these was passed over: look further

    def confirmed(self, replay_id: str, seqs: list[int], who: str, at: float) -> None:
        """The broker confirmed the copies of these letters: sent by this replay, and replayed."""
        if not seqs:
            return
        with self._db.transaction() as cur:
            cur.execute(
                self._db.sql(
                    "UPDATE replay_items SET sent_at = {p} WHERE replay_id = {p} AND seq BETWEEN {p} AND {p} "
                    "AND sent_at IS NULL AND " + self._db.in_set("seq") + " RETURNING seq"
                ),  # the range keeps it to the chunk's part of the replay's index
                (at, replay_id, min(seqs), max(seqs), self._db.set_param(seqs)),
            )
            newly = [int(r[0]) for r in cur.fetchall()]  # a confirm told twice marks the letter once
            self._letters.mark_replayed(cur, newly, who, at)

    def finish(self, replay_id: str, at: float) -> None:
        """Nothing is left to send: the replay is done."""
        with self._db.transaction() as cur:
            cur.execute(
                self._db.sql("UPDATE replays SET state = 'done', finished_at = {p} WHERE replay_id = {p}"),
                (at, replay_id),
            )

    def progress(self, replay_id: str) -> ReplayProgress | None:
        rows = self._db.query(
            "SELECT replay_id, who, started_at, selection, rate, total, state FROM replays WHERE replay_id = {p}",
            (replay_id,),
        )
        if not rows:
            return None
        rid, who, started_at, selection, rate, total, state = rows[0]
        sent = self._db.query(
            "SELECT COUNT(*) FROM replay_items WHERE replay_id = {p} AND sent_at IS NOT NULL", (replay_id,)
        )[0][0]
        passed = self._db.query(
            f"SELECT COUNT(*) {_PENDING_SQL} AND (d.deleted_at IS NOT NULL OR d.replays <> i.replays_before)",
            (replay_id,),
        )[0][0]
        return ReplayProgress(
            rid, who, float(started_at), json.loads(selection), float(rate), int(total), int(sent), int(passed), state
        )

    def of_letter(self, seq: int) -> list[tuple[str, float, str, float | None]]:
        """The replays that took on letter ``seq``, oldest first: (replay_id, started_at, who,
        sent_at: when its copy was confirmed, None while not sent)."""
        rows = self._db.query(
            "SELECT i.replay_id, r.started_at, r.who, i.sent_at FROM replay_items i "
            "JOIN replays r ON r.replay_id = i.replay_id WHERE i.seq = {p} ORDER BY r.started_at",
            (int(seq),),
        )
        return [(r[0], float(r[1]), r[2], None if r[3] is None else float(r[3])) for r in rows]

    def unfinished(self) -> list[ReplayProgress]:
        """Replays still running (cut off, or under way elsewhere), oldest first."""
        rows = self._db.query("SELECT replay_id FROM replays WHERE state = 'running' ORDER BY started_at")
        return [p for p in (self.progress(r[0]) for r in rows) if p is not None]


#: Letters chosen by number taken on per statement: a few hundred numbers stay index lookups,
#: where ten thousand made PostgreSQL (before ANALYZE) compare every letter with every number.
SEQS_PER_STATEMENT = 500


def _parts(selection: Selection) -> list[Selection]:
    """``selection`` as statements of at most ``SEQS_PER_STATEMENT`` chosen letters each."""
    if selection.seqs is None or len(selection.seqs) <= SEQS_PER_STATEMENT:
        return [selection]
    seqs = sorted(set(selection.seqs))
    return [replace(selection, seqs=tuple(seqs[i:i + SEQS_PER_STATEMENT]))
            for i in range(0, len(seqs), SEQS_PER_STATEMENT)]


def _rate(rate: float) -> str:
    return f"{rate:g}/s" if rate > 0 else "full speed"
