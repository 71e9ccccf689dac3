"""The idempotency and state store: what took effect, what was superseded, what crashed, and
the business state, schedules and history of routes with a decision.

One database (``db.py``: SQLite for one process, PostgreSQL when several workers share the
work) holds four table families, each a module and an attribute of ``Store``:

- ``store.idempotency`` (``idempotency.py``): effects, outcomes, revisions, attempts;
- ``store.state`` (``state.py``): business records and decisions, ``commit_decision``;
- ``store.schedules`` (``schedules.py``): durable schedules of internal messages;
- ``store.journal`` (``journal.py``): the history ``gridbus trace`` shows.

A decision's commit spans families (its records, schedules and journal lines in one
transaction); the families hand each other cursor-taking writers for that.
"""

from __future__ import annotations

from gridbus.workers.store.db import Database
from gridbus.workers.store.idempotency import Idempotency
from gridbus.workers.store.journal import Journal
from gridbus.workers.store.schedules import Schedules
from gridbus.workers.store.state import BusinessState


class Store:
    """The store at ``url`` (``sqlite:///PATH`` or ``postgresql://...``), its tables created if
    missing. Thread-safe for one process; for several processes use PostgreSQL."""

    def __init__(self, url: str):
        self.db = Database(url)
        self.idempotency = Idempotency(self.db)
        self.journal = Journal(self.db)
        self.schedules = Schedules(self.db, self.journal)
        self.state = BusinessState(self.db, self.schedules, self.journal)
        self.db.create_tables(
            statement
            for family in (self.idempotency, self.state, self.schedules, self.journal)
            for statement in family.SCHEMA
        )

    @property
    def url(self) -> str:
        return self.db.url

    def close(self) -> None:
        self.db.close()
