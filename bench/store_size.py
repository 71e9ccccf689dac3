"""How much the store grows per message, on SQLite and PostgreSQL, to size the retention.

Writes what the worker records for ``--messages`` finished messages, in commits of 100 as the
worker's batches do, through ``store.idempotency.record``: for a route whose steps are all confirmed
publishes (the black-map route) one ``outcomes`` row per message; for a route with a SOAP step
(supply plan: the SOAP effect is recorded as soon as it is confirmed, then the outcome) one
``effects`` row and one ``outcomes`` row. Message ids are UUIDs, as upstream systems send them.
Prints bytes per message (SQLite: the database file after its log is checkpointed; PostgreSQL:
``pg_total_relation_size`` of the idempotency tables, indexes included, in a schema of its own
that is dropped at the end), and what that makes per day at a few rates.

    .venv/bin/python bench/store_size.py                    # 100,000 messages per case
    .venv/bin/python bench/store_size.py --no-postgresql    # SQLite only

Env: GRIDBUS_BENCH_PG_URL (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gridbus.workers.store import Store  # noqa: E402

PG_URL = os.environ.get("GRIDBUS_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CASES = {
    "pms.black-map-published": (),  # two published outputs: only the outcome is recorded
    "mkt.supply-plan-pushed": ("cmd",),  # a SOAP step's effect, then the outcome
}
TABLES = ("effects", "outcomes", "attempts")


def fill(store: Store, route: str, soap_steps: tuple[str, ...], n: int, batch: int = 100) -> None:
    for start in range(0, n, batch):
        ids = [str(uuid.uuid4()) for _ in range(min(batch, n - start))]
        for step in soap_steps:  # recorded one by one, as Pipeline._deliver_now does
            store.idempotency.record(effects=[(route, mid, step) for mid in ids])
        store.idempotency.record(outcomes=[(route, mid, "delivered") for mid in ids])


def sqlite_bytes(route: str, soap_steps: tuple[str, ...], n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="gridbus-store-size-") as tmp:
        path = Path(tmp) / "store.sqlite3"
        store = Store(f"sqlite:///{path}")
        store.close()
        empty = path.stat().st_size
        store = Store(f"sqlite:///{path}")
        fill(store, route, soap_steps, n)
        store.close()  # the checkpointer copies the log into the database and truncates it
        return (path.stat().st_size - empty) / n


def postgresql_bytes(route: str, soap_steps: tuple[str, ...], n: int) -> float:
    import psycopg

    schema = f"gridbus_size_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        store = Store(f"{PG_URL}?options=-csearch_path%3D{schema}")
        size = " + ".join(f"pg_total_relation_size('{schema}.{t}')" for t in TABLES)
        empty = store.db.query(f"SELECT {size}")[0][0]
        fill(store, route, soap_steps, n)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"VACUUM ANALYZE {schema}.outcomes")  # the visibility map and free space map, as autovacuum makes them
            conn.execute(f"VACUUM ANALYZE {schema}.effects")
        full = store.db.query(f"SELECT {size}")[0][0]
        store.close()
        return (full - empty) / n
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per case (default 100000)")
    parser.add_argument("--no-postgresql", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    n = args.messages
    print(f"{n} messages per case; bytes per message (rows and their indexes)")
    print(f"{'route':<26} {'store':<11} {'bytes/msg':>9}   {'per day at 50 / 200 / 1000 msg/s':>34}")
    for route, soap_steps in CASES.items():
        measured = [("SQLite", sqlite_bytes(route, soap_steps, n))]
        if not args.no_postgresql:
            measured.append(("PostgreSQL", postgresql_bytes(route, soap_steps, n)))
        for name, per_message in measured:
            per_day = [per_message * rate * 86400 / 1e9 for rate in (50, 200, 1000)]
            print(f"{route:<26} {name:<11} {per_message:9.0f}   "
                  + " / ".join(f"{gb:.1f} GB" for gb in per_day))
    return 0


if __name__ == "__main__":
    sys.exit(main())
