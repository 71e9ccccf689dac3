"""The dead-letter archive: every dead letter taken from its queue, for operators to look at,
group, search, replay and purge without touching the broker.

Tables
- dead_letters(seq, letter_id, route, queue, message_id, message_type, error_type, reason,
  first_failure_at, last_failure_at, dead_lettered_at, attempts, business_keys, properties,
  headers, body, archived_at, replays, replayed_at, replayed_by, deleted_at, deleted_by): one
  letter, its body byte for byte and its properties and headers with their types
  (``values.dumps``). ``letter_id`` is a fingerprint of what the broker handed over, so the same
  letter delivered again (the ingester stopped between its commit and its ack) is archived once.
  A letter is *unhandled* until it is replayed (``replayed_at``) or soft-deleted (``deleted_at``).
- dead_letter_keys(key, seq): the business keys of a letter (its route's trace keys, when the
  body met the contract), for the search by key.

The ingester (``gridbus.tools.archive``) fills it and acks a letter only after ``ingest``
committed. Times are seconds since the epoch. Purge, restore and removal write their audit row
(``audit.py``) in the same transaction; replays are in ``replays.py``. The worker's retention
(``expire``, ``remove_expired``) keeps the archive bounded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

from gridbus.workers.store import values
from gridbus.workers.store.audit import Audit, AuditEntry
from gridbus.workers.store.db import Database, to_json

#: What a selection's ``status`` can ask for.
STATUSES = ("unhandled", "replayed", "deleted", "any")

_STATUS_SQL = {
    "unhandled": "replayed_at IS NULL AND deleted_at IS NULL",
    "replayed": "replayed_at IS NOT NULL AND deleted_at IS NULL",
    "deleted": "deleted_at IS NOT NULL",
    "any": "1 = 1",
}

_SUMMARY = (
    "seq, letter_id, route, queue, message_id, message_type, error_type, reason, first_failure_at, "
    "last_failure_at, dead_lettered_at, attempts, business_keys, archived_at, replays, replayed_at, "
    "replayed_by, deleted_at, deleted_by"
)
#: The columns ``archived_letter`` reads, in its order.
FULL_COLUMNS = _SUMMARY + ", properties, headers, body"

_INSERT = (
    "INSERT INTO dead_letters (letter_id, route, queue, message_id, message_type, error_type, reason, "
    "first_failure_at, last_failure_at, dead_lettered_at, attempts, business_keys, properties, headers, body, "
    "archived_at, replays) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, 0) "
    "ON CONFLICT (letter_id) DO NOTHING"
)
_INSERT_KEY = (
    "INSERT INTO dead_letter_keys (key, seq) SELECT {p}, seq FROM dead_letters WHERE letter_id = {p} "
    "ON CONFLICT DO NOTHING"
)


def letter_id(queue: str, properties: dict, headers: dict, body: bytes) -> str:
    """The fingerprint of a letter as its queue holds it. ``x-delivery-count`` is left out: the
    broker raises it each time it hands the same letter out again."""
    stable = {k: v for k, v in headers.items() if k != "x-delivery-count"}
    props = {k: v for k, v in properties.items() if k != "application_headers"}
    digest = hashlib.sha256()
    for part in (queue.encode(), values.dumps(props).encode(), values.dumps(stable).encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class NewLetter:
    """A dead letter as the ingester read it, to archive. ``reason`` is single-line and bounded
    by whoever wrote it (gridbus's fate, or the ingester for a letter the broker dead-lettered)."""

    letter_id: str
    route: str
    queue: str
    message_id: str
    message_type: str
    error_type: str
    reason: str
    first_failure_at: float | None
    last_failure_at: float | None
    dead_lettered_at: float
    attempts: int
    business_keys: tuple[str, ...]
    properties: dict
    headers: dict
    body: bytes


@dataclass(frozen=True)
class LetterSummary:
    """A letter as a listing shows it: everything but its properties, headers and body."""

    seq: int
    letter_id: str
    route: str
    queue: str
    message_id: str
    message_type: str
    error_type: str
    reason: str
    first_failure_at: float | None
    last_failure_at: float | None
    dead_lettered_at: float
    attempts: int
    business_keys: tuple[str, ...]
    archived_at: float
    replays: int
    replayed_at: float | None
    replayed_by: str | None
    deleted_at: float | None
    deleted_by: str | None

    @property
    def status(self) -> str:
        if self.deleted_at is not None:
            return "deleted"
        return "replayed" if self.replayed_at is not None else "unhandled"


@dataclass(frozen=True)
class ArchivedLetter(LetterSummary):
    """One letter with all it carried."""

    properties: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Group:
    """Letters of one route, error type and message type: how many, first and last seen."""

    route: str
    error_type: str
    message_type: str
    count: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Selection:
    """Which letters: every field given must match. since/until bound ``dead_lettered_at``
    (until exclusive); key: one of its business keys; text: a case-insensitive part of the
    reason; seqs: these letters; routes: of one of these routes; status: unhandled (default),
    replayed, deleted or any."""

    route: str | None = None
    error_type: str | None = None
    message_type: str | None = None
    since: float | None = None
    until: float | None = None
    key: str | None = None
    text: str | None = None
    message_id: str | None = None
    seqs: tuple[int, ...] | None = None
    routes: tuple[str, ...] | None = None
    status: str = "unhandled"

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")

    def as_dict(self) -> dict:
        """The fields given, for the audit row and ``--json``."""
        chosen = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        for many in ("seqs", "routes"):
            if many in chosen:
                chosen[many] = list(chosen[many])
        return chosen

    @classmethod
    def from_dict(cls, data: dict) -> "Selection":
        data = dict(data)
        if data.get("seqs") is not None:
            data["seqs"] = tuple(int(s) for s in data["seqs"])
        if data.get("routes") is not None:
            data["routes"] = tuple(str(r) for r in data["routes"])
        return cls(**data)

    def where(self, db: Database) -> tuple[str, list]:
        """The WHERE clause (``{p}`` placeholders) and its parameters."""
        clauses, params = [_STATUS_SQL[self.status]], []
        for column in ("route", "error_type", "message_type", "message_id"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = {{p}}")
                params.append(value)
        if self.since is not None:
            clauses.append("dead_lettered_at >= {p}")
            params.append(self.since)
        if self.until is not None:
            clauses.append("dead_lettered_at < {p}")
            params.append(self.until)
        if self.key is not None:
            clauses.append(db.in_subquery("seq", "SELECT seq FROM dead_letter_keys WHERE key = {p}"))
            params.append(self.key)
        if self.text:
            clauses.append("LOWER(reason) LIKE {p} ESCAPE '\\'")
            params.append("%" + _like_escaped(self.text.lower()) + "%")
        if self.seqs is not None:
            clauses.append(db.in_set("seq"))
            params.append(db.set_param(int(s) for s in self.seqs))
        if self.routes is not None:
            clauses.append(db.in_set("route"))
            params.append(db.set_param(self.routes))
        return " AND ".join(clauses), params


class DeadLetters:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS dead_letters (
            seq {serial}, letter_id TEXT NOT NULL UNIQUE, route TEXT NOT NULL, queue TEXT NOT NULL,
            message_id TEXT NOT NULL, message_type TEXT NOT NULL, error_type TEXT NOT NULL, reason TEXT NOT NULL,
            first_failure_at DOUBLE PRECISION, last_failure_at DOUBLE PRECISION,
            dead_lettered_at DOUBLE PRECISION NOT NULL, attempts INTEGER NOT NULL, business_keys TEXT NOT NULL,
            properties TEXT NOT NULL, headers TEXT NOT NULL, body {blob} NOT NULL,
            archived_at DOUBLE PRECISION NOT NULL, replays INTEGER NOT NULL,
            replayed_at DOUBLE PRECISION, replayed_by TEXT, deleted_at DOUBLE PRECISION, deleted_by TEXT)""",
        """CREATE TABLE IF NOT EXISTS dead_letter_keys (
            key TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (key, seq))""",
        "CREATE INDEX IF NOT EXISTS dead_letter_keys_seq ON dead_letter_keys (seq)",
        # the overview: groups of unhandled letters, read from the index alone
        """CREATE INDEX IF NOT EXISTS dead_letters_unhandled ON dead_letters
            (route, error_type, message_type, dead_lettered_at) WHERE replayed_at IS NULL AND deleted_at IS NULL""",
        "CREATE INDEX IF NOT EXISTS dead_letters_at ON dead_letters (dead_lettered_at)",
        "CREATE INDEX IF NOT EXISTS dead_letters_message_id ON dead_letters (message_id)",
        "CREATE INDEX IF NOT EXISTS dead_letters_deleted ON dead_letters (deleted_at) WHERE deleted_at IS NOT NULL",
    )

    def __init__(self, db: Database, audit: Audit):
        self._db = db
        self._audit = audit

    # -- ingestion ------------------------------------------------------------------------------

    def ingest(self, letters: Iterable[NewLetter], at: float) -> int:
        """Archive ``letters`` in one commit; returns how many were new (a letter already
        archived, by ``letter_id``, is left as it is)."""
        letters = list(letters)
        if not letters:
            return 0
        with self._db.transaction() as cur:
            cur.executemany(self._db.sql(_INSERT), [_insert_params(x, at) for x in letters])
            new = max(cur.rowcount, 0)
            keys = [(key, x.letter_id) for x in letters for key in sorted(set(x.business_keys))]
            if keys:  # a letter archived before has its keys already: ON CONFLICT keeps them once
                cur.executemany(self._db.sql(_INSERT_KEY), keys)
        return new

    # -- reads ----------------------------------------------------------------------------------

    def groups(self, selection: Selection = Selection()) -> list[Group]:
        """Letters of ``selection`` by route x error type x message type, the largest group first."""
        where, params = selection.where(self._db)
        rows = self._db.query(
            "SELECT route, error_type, message_type, COUNT(*), MIN(dead_lettered_at), MAX(dead_lettered_at) "
            f"FROM dead_letters WHERE {where} GROUP BY route, error_type, message_type "
            "ORDER BY COUNT(*) DESC, route, error_type, message_type",
            tuple(params),
        )
        return [Group(r[0], r[1], r[2], int(r[3]), float(r[4]), float(r[5])) for r in rows]

    def count(self, selection: Selection = Selection()) -> int:
        where, params = selection.where(self._db)
        return int(self._db.query(f"SELECT COUNT(*) FROM dead_letters WHERE {where}", tuple(params))[0][0])

    def search(self, selection: Selection = Selection(), *, limit: int = 100, before: int | None = None) -> list[LetterSummary]:
        """Letters of ``selection``, newest first, at most ``limit``; ``before``: only letters
        archived before the one with this ``seq`` (the next page)."""
        where, params = selection.where(self._db)
        if before is not None:
            where += " AND seq < {p}"
            params.append(int(before))
        rows = self._db.query(
            f"SELECT {_SUMMARY} FROM dead_letters WHERE {where} ORDER BY seq DESC LIMIT {int(limit)}", tuple(params)
        )
        return [_summary(r) for r in rows]

    def get(self, seq: int) -> ArchivedLetter | None:
        """One letter with its properties, headers and body; None if there is none (any status)."""
        rows = self._db.query(f"SELECT {FULL_COLUMNS} FROM dead_letters WHERE seq = {{p}}", (int(seq),))
        return archived_letter(rows[0]) if rows else None

    def letters(self, selection: Selection, *, after: int = 0, limit: int = 500) -> list[ArchivedLetter]:
        """Full letters of ``selection`` with ``seq`` above ``after``, oldest first (to walk a selection)."""
        where, params = selection.where(self._db)
        rows = self._db.query(
            f"SELECT {FULL_COLUMNS} FROM dead_letters WHERE {where} AND seq > {{p}} ORDER BY seq LIMIT {int(limit)}",
            (*params, int(after)),
        )
        return [archived_letter(r) for r in rows]

    def oldest_unhandled(self) -> dict[str, float]:
        """route -> when its oldest unhandled letter was dead-lettered."""
        rows = self._db.query(
            f"SELECT route, MIN(dead_lettered_at) FROM dead_letters WHERE {_STATUS_SQL['unhandled']} GROUP BY route"
        )
        return {r[0]: float(r[1]) for r in rows}

    # -- changes --------------------------------------------------------------------------------

    def mark_replayed(self, cur, seqs: Iterable[int], who: str, at: float) -> int:
        """Inside the caller's transaction: these letters' copies were confirmed by the broker."""
        seqs = list(seqs)
        if not seqs:
            return 0
        cur.execute(
            self._db.sql(
                "UPDATE dead_letters SET replayed_at = {p}, replayed_by = {p}, replays = replays + 1 WHERE "
                + self._db.in_set("seq")
            ),
            (at, who, self._db.set_param(seqs)),
        )
        return max(cur.rowcount, 0)

    def record_replay(self, seq: int, who: str, at: float, entry: AuditEntry) -> None:
        """Letter ``seq`` was sent again outside a replay (edited): marked replayed, and audited,
        in one commit."""
        with self._db.transaction() as cur:
            self.mark_replayed(cur, [seq], who, at)
            self._audit.write(cur, entry)

    def soft_delete(self, selection: Selection, who: str, at: float) -> int:
        """Purge the letters of ``selection`` (not yet deleted): hidden, restorable until the
        restore window is over (``remove_expired``). Audited."""
        where, params = selection.where(self._db)
        with self._db.transaction() as cur:
            cur.execute(
                self._db.sql(f"UPDATE dead_letters SET deleted_at = {{p}}, deleted_by = {{p}} WHERE {where} "
                             "AND deleted_at IS NULL"),
                (at, who, *params),
            )
            count = max(cur.rowcount, 0)
            self._audit.write(cur, AuditEntry(
                at, who, "purge", f"purged {count} dead letter(s)", count, selection.as_dict()))
        return count

    def restore(self, selection: Selection, who: str, at: float) -> int:
        """Bring back purged letters of ``selection`` (its status is taken as ``deleted``) that
        are not removed yet. Audited."""
        selection = Selection.from_dict({**selection.as_dict(), "status": "deleted"})
        where, params = selection.where(self._db)
        with self._db.transaction() as cur:
            cur.execute(
                self._db.sql(f"UPDATE dead_letters SET deleted_at = NULL, deleted_by = NULL WHERE {where}"),
                tuple(params),
            )
            count = max(cur.rowcount, 0)
            self._audit.write(cur, AuditEntry(
                at, who, "restore", f"restored {count} dead letter(s)", count, selection.as_dict()))
        return count

    def expire(self, retention_s: float, at: float, who: str = "retention") -> int:
        """Purge (soft-delete) every letter dead-lettered more than ``retention_s`` before ``at``."""
        cutoff = at - retention_s
        count = self.count(Selection(until=cutoff, status="any")) - self.count(Selection(until=cutoff, status="deleted"))
        if not count:
            return 0
        return self.soft_delete(Selection(until=cutoff, status="any"), who, at)

    def remove_expired(self, restorable_s: float, at: float, who: str = "retention", limit: int = 1000) -> int:
        """Remove for good at most ``limit`` letters purged more than ``restorable_s`` before
        ``at``; returns how many (fewer than ``limit``: none is left). Audited when any."""
        cutoff = at - restorable_s
        with self._db.transaction() as cur:
            cur.execute(
                self._db.sql(
                    f"SELECT seq FROM dead_letters WHERE deleted_at IS NOT NULL AND deleted_at < {{p}} "
                    f"ORDER BY seq LIMIT {int(limit)}"
                ),
                (cutoff,),
            )
            seqs = [int(r[0]) for r in cur.fetchall()]
            if not seqs:
                return 0
            param = self._db.set_param(seqs)
            cur.execute(self._db.sql("DELETE FROM dead_letter_keys WHERE " + self._db.in_set("seq")), (param,))
            cur.execute(self._db.sql("DELETE FROM dead_letters WHERE " + self._db.in_set("seq")), (param,))
            self._audit.write(cur, AuditEntry(
                at, who, "remove", f"removed {len(seqs)} purged dead letter(s) for good", len(seqs),
                {"deleted_before": cutoff}))
        return len(seqs)


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _insert_params(letter: NewLetter, at: float) -> tuple:
    return (
        letter.letter_id, letter.route, letter.queue, letter.message_id, letter.message_type, letter.error_type,
        letter.reason, letter.first_failure_at, letter.last_failure_at, letter.dead_lettered_at, int(letter.attempts),
        to_json(list(letter.business_keys)), values.dumps(letter.properties), values.dumps(letter.headers),
        bytes(letter.body), at,
    )


def _fields(r) -> dict:
    return dict(
        seq=int(r[0]), letter_id=r[1], route=r[2], queue=r[3], message_id=r[4], message_type=r[5],
        error_type=r[6], reason=r[7], first_failure_at=_float(r[8]), last_failure_at=_float(r[9]),
        dead_lettered_at=float(r[10]), attempts=int(r[11]), business_keys=tuple(json.loads(r[12])),
        archived_at=float(r[13]), replays=int(r[14]), replayed_at=_float(r[15]), replayed_by=r[16],
        deleted_at=_float(r[17]), deleted_by=r[18],
    )


def _summary(r) -> LetterSummary:
    return LetterSummary(**_fields(r))


def archived_letter(r) -> ArchivedLetter:
    """A row of ``FULL_COLUMNS`` as a letter."""
    return ArchivedLetter(
        **_fields(r), properties=values.loads(r[19]), headers=values.loads(r[20]), body=bytes(r[21])
    )


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
