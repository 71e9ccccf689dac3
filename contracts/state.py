"""What a route's ``decide`` function reads and returns: durable business state, decided once.

A route with a decision keeps business state in the store (sales companies, bindings of retail
users...), as JSON records of a ``kind`` under a ``key``. ``decide(message, state, now)`` reads
records through ``State`` and returns a ``Decision``: the records to write, the schedules to
set or cancel, the state changes to journal, and a JSON ``result`` for the route's steps.

The runtime commits all of it in one transaction together with the fact that this message was
decided. Records are versioned: if another worker changed a record this decision read, the
commit is refused and the message retried, so two workers never decide on stale state. A
redelivered message is not decided again; its steps get the recorded result.

Schedules are durable too: a schedule names an internal route (``Source(system="gridbus")``),
a key and a due time; when the due time has come (by the worker's clock) the worker sends the
schedule's payload as a message to that route, once, whatever restarted in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Protocol


@dataclass(frozen=True)
class Record:
    """A stored business record: ``data`` of ``kind`` under ``key``; ``ref`` a secondary key.
    As read, ``version`` counts its writes; as written by a decision, the store sets it."""

    kind: str
    key: str
    data: Mapping[str, Any]
    ref: str | None = None
    version: int = 0


class State(Protocol):
    """Read access to the stored records during a decision."""

    def get(self, kind: str, key: str) -> Record | None: ...

    def get_many(self, kind: str, keys: Iterable[str], *, checked: bool = True) -> dict[str, Record]:
        """The records of ``kind`` under ``keys`` that exist, by key: one read for a whole batch
        of keys (a readings batch's ten thousand metering points), not one per key.

        ``checked=False`` reads reference data as it is now, and the commit does not check it
        again: only for a kind this decision never writes and whose writers never read what
        this decision writes (then either order of the two is a valid history)."""
        ...

    def get_data_many(self, kind: str, keys: Iterable[str], *, raw: bool = False) -> dict[str, Any]:
        """``get_many``'s records' ``data`` alone, by key: the same read, checked at commit the same
        way, without a ``Record`` for each of ten thousand keys; with ``raw`` each as its stored
        JSON text, for a decision that reads its own plain shape faster than ``json`` does."""
        ...

    def find(
        self, kind: str, *, ref: str | None = None, key_prefix: str | None = None, checked: bool = True
    ) -> list[Record]:
        """The records of ``kind`` with ``ref`` or a key starting with ``key_prefix``;
        ``checked=False`` as for ``get_many``."""
        ...


@dataclass(frozen=True)
class Schedule:
    """Send ``payload`` to internal route ``route`` at ``due_at``; one schedule per (route, key):
    setting it again replaces the due time and payload."""

    route: str
    key: str
    due_at: datetime
    payload: Mapping[str, Any]
    trace_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cancel:
    """Drop the pending schedule (route, key), if any."""

    route: str
    key: str


@dataclass(frozen=True)
class Change:
    """A state change worth a line in ``gridbus trace`` under each of ``keys``."""

    keys: tuple[str, ...]
    what: str


@dataclass
class Decision:
    result: dict[str, Any] = field(default_factory=dict)
    puts: list[Record] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    cancels: list[Cancel] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    #: ``put_encoded``'s records: kind -> {key: data as JSON text}, no ref
    encoded: dict[str, dict[str, str]] = field(default_factory=dict)

    def put(self, kind: str, key: str, data: Mapping[str, Any], ref: str | None = None) -> None:
        self.puts.append(Record(kind, key, dict(data), ref))

    def put_encoded(self, kind: str, data: Mapping[str, str]) -> None:
        """Records of ``kind`` by key, their data already JSON text as the store writes it
        (compact, keys sorted, Chinese as it is), no ref: for a decision that writes ten thousand
        records of one plain shape, where an object and ``json`` for each would cost more than
        the rest of the decision."""
        self.encoded.setdefault(kind, {}).update(data)

    def writes(self) -> Iterator[tuple[str, str, str | None, Any]]:
        """Every record this decision writes: ``(kind, key, ref, data)``; ``put_encoded``'s data as its text."""
        for put in self.puts:
            yield put.kind, put.key, put.ref, put.data
        for kind, data in self.encoded.items():
            for key, text in data.items():
                yield kind, key, None, text

    def change(self, keys: Iterable[str], what: str) -> None:
        self.changes.append(Change(tuple(keys), what))
