"""The idempotency and state store: what took effect, what was superseded, what crashed, and
the business state, schedules and history of routes with a decision.

One database (``db.py``: SQLite for one process, PostgreSQL when several workers share the
work) holds these table families, each a module and an attribute of ``Store``:

- ``store.idempotency`` (``idempotency.py``): effects, outcomes, revisions, attempts;
- ``store.state`` (``state.py``): business records and decisions, ``commit_decision``;
- ``store.schedules`` (``schedules.py``): durable schedules of internal messages;
- ``store.journal`` (``journal.py``): the history ``gridbus trace`` shows;
- ``store.dead_letters`` (``dead_letters.py``): the dead-letter archive operators look at;
- ``store.replays`` (``replays.py``): replays of archived letters, resumable;
- ``store.audit`` (``audit.py``): the append-only trail of what operators did.

A decision's commit spans families (its records, schedules and journal lines in one
transaction); the families hand each other cursor-taking writers for that.
"""

from __future__ import annotations

from gridbus.workers.store.audit import Audit
from gridbus.workers.store.db import Database
from gridbus.workers.store.dead_letters import DeadLetters
from gridbus.workers.store.idempotency import Idempotency
from gridbus.workers.store.journal import Journal
from gridbus.workers.store.replays import Replays
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
        self.audit = Audit(self.db)
        self.dead_letters = DeadLetters(self.db, self.audit)
        self.replays = Replays(self.db, self.dead_letters, self.audit)
        families = (
            self.idempotency, self.state, self.schedules, self.journal, self.audit, self.dead_letters, self.replays
        )
        self.db.create_tables([*(s for family in families for s in family.SCHEMA), *self.audit.guard()])

    @property
    def url(self) -> str:
        return self.db.url

    def close(self) -> None:
        self.db.close()
