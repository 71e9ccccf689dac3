"""Business state of routes with a decision: versioned records and each message's decision.

Tables
- records(kind, key, ref, version, data): business state (JSON), ``version`` counting its writes.
- decisions(route, message_id, result): a message was decided; the result its steps read.

``commit_decision`` writes a decision with everything it sets, the records here and the
schedules and journal lines of the other families (through their cursor-taking writers), in one
transaction: all of it commits, or none of it. The retention purge leaves these tables alone.
"""

from __future__ import annotations

import json
from datetime import datetime
from itertools import repeat
from typing import Any, Iterable

from gridbus.contracts.state import Decision, Record
from gridbus.workers.store.db import Database, to_json
from gridbus.workers.store.journal import Journal
from gridbus.workers.store.schedules import Schedules

_COLUMNS = "kind, key, ref, version, data"

_DECIDED = "INSERT INTO decisions (route, message_id, result, at) VALUES ({p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
_PUT_UNREAD = (  # written without being read: last writer wins
    "INSERT INTO records (kind, key, ref, version, data, at) VALUES ({p}, {p}, {p}, 1, {p}, {p}) "
    "ON CONFLICT (kind, key) DO UPDATE SET ref = excluded.ref, data = excluded.data, "
    "at = excluded.at, version = records.version + 1"
)
_PUT_ABSENT = (  # read as absent: must still be absent
    "INSERT INTO records (kind, key, ref, version, data, at) VALUES ({p}, {p}, {p}, 1, {p}, {p}) ON CONFLICT DO NOTHING"
)
_PUT_READ = (  # read at a version: must still be at that version
    "UPDATE records SET ref = {p}, data = {p}, at = {p}, version = version + 1 "
    "WHERE kind = {p} AND key = {p} AND version = {p}"
)


class _Refused(Exception):
    """A decision's commit found state changed meanwhile: roll everything back."""


class BusinessState:
    SCHEMA = (
        """CREATE TABLE IF NOT EXISTS records (
            kind TEXT NOT NULL, key TEXT NOT NULL, ref TEXT, version BIGINT NOT NULL, data TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL, PRIMARY KEY (kind, key))""",
        """CREATE TABLE IF NOT EXISTS decisions (
            route TEXT NOT NULL, message_id TEXT NOT NULL, result TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (route, message_id))""",
        "CREATE INDEX IF NOT EXISTS records_ref ON records (kind, ref)",
    )

    def __init__(self, db: Database, schedules: Schedules, journal: Journal):
        self._db = db
        self._schedules = schedules
        self._journal = journal

    def view(self) -> StateView:
        """A read view for one decision; it remembers the versions it read."""
        return StateView(self)

    def get_record(self, kind: str, key: str) -> Record | None:
        rows = self._db.query(f"SELECT {_COLUMNS} FROM records WHERE kind = {{p}} AND key = {{p}}", (kind, key))
        return _record(rows[0]) if rows else None

    def get_records(self, kind: str, keys: Iterable[str], param: Any = None) -> dict[str, Record]:
        """The records of ``kind`` under ``keys`` that exist, by key, read in one statement."""
        rows = self._db.query(self._db.keyed(_COLUMNS, "records", "key", "kind = {p}"), (self._db.set_param(set(keys)) if param is None else param, kind))
        return {row[1]: _record(row) for row in rows}

    def get_data(self, kind: str, keys: Iterable[str], *, raw: bool = False, param: Any = None) -> list[tuple[str, int, object]]:
        """``(key, version, data)`` of the records of ``kind`` under ``keys`` that exist, in one
        statement: ``get_records`` without a ``Record`` per row, for thousands of keys; with
        ``raw`` the data as its stored JSON text; ``param``: the keys as ``Database.set_param``
        gives them, when the caller has it already."""
        rows = self._db.query(
            self._db.keyed("key, version, data", "records", "key", "kind = {p}"),
            (self._db.set_param(set(keys)) if param is None else param, kind),
        )
        if raw:
            return [(key, int(version), data) for key, version, data in rows]
        loads = json.loads
        return [(key, int(version), loads(data)) for key, version, data in rows]

    def key_param(self, keys: Iterable[str]) -> Any:
        """``keys`` as the parameter of ``get_records`` and ``get_data``."""
        return self._db.set_param(keys)

    def find_records(self, kind: str, *, ref: str | None = None, key_prefix: str | None = None) -> list[Record]:
        sql, params = f"SELECT {_COLUMNS} FROM records WHERE kind = {{p}}", [kind]
        if ref is not None:
            sql += " AND ref = {p}"
            params.append(ref)
        if key_prefix is not None:
            sql += " AND substr(key, 1, {p}) = {p}"
            params += [len(key_prefix), key_prefix]
        return [_record(r) for r in self._db.query(sql + " ORDER BY key", tuple(params))]

    def decision(self, route: str, message_id: str) -> dict | None:
        """The recorded result of deciding this message, or None when it was not decided yet."""
        rows = self._db.query(
            "SELECT result FROM decisions WHERE route = {p} AND message_id = {p}", (route, message_id)
        )
        return json.loads(rows[0][0]) if rows else None

    def commit_decision(
        self, route: str, message_id: str, decision: Decision, read: dict[tuple[str, str], int], now: datetime
    ) -> bool:
        """Commit a decision with everything it writes; False (nothing written) when a record it
        read changed meanwhile or the message was decided by another worker."""
        at = now.timestamp()
        rows, unchanged = _rows(decision, read, at)  # before the transaction: the store's lock is held less
        try:
            with self._db.transaction() as cur:
                self._write(cur, route, message_id, decision, rows, unchanged, at)
        except _Refused:
            return False
        return True

    def _write(self, cur, route: str, message_id: str, decision: Decision, rows, unchanged, at: float) -> None:
        sql = self._db.sql
        cur.execute(sql(_DECIDED), (route, message_id, to_json(decision.result), at))
        if cur.rowcount != 1:
            raise _Refused
        for statement, batch in zip((_PUT_UNREAD, _PUT_ABSENT, _PUT_READ), rows):
            if batch:  # one statement per kind of write, each row of it must have taken effect
                cur.executemany(sql(statement), batch)
                if cur.rowcount != len(batch):
                    raise _Refused
        self._check_unchanged(cur, unchanged)
        self._journal.write(
            cur, [(at, key, "state", route, message_id, change.what) for change in decision.changes for key in change.keys]
        )
        self._schedules.write(cur, route, message_id, decision.schedules, decision.cancels, at)

    def _check_unchanged(self, cur, read: dict[tuple[str, str], int]) -> None:
        """What was read and not written must still be at the version read (0: still absent):
        one query per kind of record read."""
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, key), version in read.items():
            by_kind.setdefault(kind, {})[key] = version
        for kind, versions in by_kind.items():
            cur.execute(self._db.keyed("key, version", "records", "key", "kind = {p}"), (self._db.set_param(versions), kind))
            found = dict(cur.fetchall())
            if any(found.get(key, 0) != version for key, version in versions.items()):
                raise _Refused


def _rows(decision: Decision, read: dict[tuple[str, str], int], at: float):
    """The decision's writes as rows of the three statements (written unread, read as absent,
    read at a version), and what it read without writing (to check at commit)."""
    unread, absent, updated = [], [], []
    unchanged = dict(read)
    pop = unchanged.pop
    for put in decision.puts:
        version = pop((put.kind, put.key), None)
        data = to_json(put.data)
        if version is None:
            unread.append((put.kind, put.key, put.ref, data, at))
        elif version == 0:
            absent.append((put.kind, put.key, put.ref, data, at))
        else:
            updated.append((put.ref, data, at, put.kind, put.key, version))
    for kind, texts in decision.encoded.items():
        versions = [pop((kind, key), None) for key in texts]
        if None not in versions and 0 not in versions:  # every one read, at a version: ten thousand at C speed
            updated += zip(repeat(None), texts.values(), repeat(at), repeat(kind), texts.keys(), versions)
            continue
        for (key, data), version in zip(texts.items(), versions):
            if version is None:
                unread.append((kind, key, None, data, at))
            elif version == 0:
                absent.append((kind, key, None, data, at))
            else:
                updated.append((None, data, at, kind, key, version))
    return (unread, absent, updated), unchanged


class StateView:
    """``contracts.state.State`` over the store, remembering each record's version as read."""

    def __init__(self, state: BusinessState):
        self._state = state
        self.read: dict[tuple[str, str], int] = {}
        self._keys: tuple[tuple[str, ...], set[str], Any] | None = None  # the last keys read, see _key_set

    def get(self, kind: str, key: str) -> Record | None:
        record = self._state.get_record(kind, key)
        self.read.setdefault((kind, key), record.version if record else 0)
        return record

    def _key_set(self, keys: Iterable[str]) -> tuple[set[str], Any]:
        """The keys as a set and as the statement's parameter: the same keys read for several
        kinds (a readings part's ten thousand points, three kinds) are encoded once."""
        wanted = tuple(keys)
        if self._keys is not None and self._keys[0] == wanted:
            return self._keys[1], self._keys[2]
        unique = set(wanted)
        param = self._state.key_param(unique)
        self._keys = (wanted, unique, param)
        return unique, param

    def get_many(self, kind: str, keys: Iterable[str], *, checked: bool = True) -> dict[str, Record]:
        keys, param = self._key_set(keys)
        records = self._state.get_records(kind, keys, param)
        if checked:
            read = self.read
            for key in keys:
                record = records.get(key)
                read.setdefault((kind, key), record.version if record else 0)
        return records

    def get_data_many(self, kind: str, keys: Iterable[str], *, raw: bool = False) -> dict[str, Any]:
        keys, param = self._key_set(keys)
        found = self._state.get_data(kind, keys, raw=raw, param=param)
        read = self.read
        for key in keys:
            read.setdefault((kind, key), 0)
        for key, version, _ in found:
            if read[(kind, key)] == 0:
                read[(kind, key)] = version
        return {key: data for key, _, data in found}

    def find(
        self, kind: str, *, ref: str | None = None, key_prefix: str | None = None, checked: bool = True
    ) -> list[Record]:
        records = self._state.find_records(kind, ref=ref, key_prefix=key_prefix)
        if checked:
            for record in records:
                self.read.setdefault((kind, record.key), record.version)
        return records


def _record(row) -> Record:
    kind, key, ref, version, data = row
    return Record(kind=kind, key=key, ref=ref, version=int(version), data=json.loads(data))
