"""How long the console's pages take over a large archive.

Fills a store of its own with N dead letters (default 100,000) over 8 routes and 20 error types,
then times each page through the real application (Starlette's test client, in process: the
server's time, no browser), best of three, signed in as an admin. No broker is needed.

    .venv/bin/python bench/console_pages.py                          # SQLite in a temporary folder
    .venv/bin/python bench/console_pages.py --store postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/console_pages.py --letters 20000

With PostgreSQL it works in a schema of its own (dropped at the end) and runs ANALYZE after the
fill, as autovacuum would soon after such a load.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import uuid
from contextlib import contextmanager

from starlette.testclient import TestClient

from gridbus.routes import ROUTES
from gridbus.tools.console.app import ConsoleConfig, build_app
from gridbus.workers.store import Store
from gridbus.workers.store.dead_letters import NewLetter, letter_id

ROUTE_NAMES = [f"bench.route-{i}" for i in range(8)]
PAGES = (
    ("overview", "/"),
    ("groups", "/dead-letters"),
    ("groups sorted by route", "/dead-letters?sort=route"),
    ("letters, newest 100", "/dead-letters/letters"),
    ("search by business key", "/dead-letters/letters?key=K{key}"),
    ("search in the reasons", "/dead-letters/letters?text=reason+{key}"),
    ("one letter", "/dead-letters/{seq}"),
    ("audit", "/audit"),
)


def fill(store: Store, count: int, now: float) -> None:
    batch = []
    for n in range(count):
        route, error_type, message_id = ROUTE_NAMES[n % 8], f"error-{n % 20}", str(uuid.UUID(int=n + 1))
        properties = {"message_id": message_id, "type": "BenchMessage", "content_type": "application/xml"}
        headers = {"x-gridbus-route": route, "x-gridbus-error-type": error_type}
        body = f"<Bench n='{n}'>户号 {n}</Bench>".encode()
        at = now - n * 30  # one every 30 s back in time: about 35 days for 100,000
        batch.append(NewLetter(
            letter_id(f"{route}.dlq", properties, headers, body), route, f"gridbus.{route}.dlq", message_id,
            "BenchMessage", error_type, f"reason {n}", at, at, at, 1, (f"K{n}",), properties, headers, body,
        ))
        if len(batch) == 5_000:
            store.dead_letters.ingest(batch, now)
            batch = []
    store.dead_letters.ingest(batch, now)


@contextmanager
def bench_store(url: str | None):
    if url is None:
        with tempfile.TemporaryDirectory() as folder:
            store = Store(f"sqlite:///{folder}/bench.sqlite3")
            yield store
            store.close()
        return
    import psycopg

    schema = f"gridbus_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    store = Store(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        yield store
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=None, help="postgresql://... (default: SQLite in a temporary folder)")
    parser.add_argument("--letters", type=int, default=100_000)
    args = parser.parse_args()
    with bench_store(args.store) as store:
        now = time.time()
        started = time.monotonic()
        fill(store, args.letters, now)
        kind = "PostgreSQL" if store.url.startswith("postgresql") else "SQLite"
        print(f"archived {args.letters:,} letters in {time.monotonic() - started:.1f} s ({kind})")
        if store.url.startswith("postgresql"):
            with store.db.transaction() as cur:
                cur.execute("ANALYZE")
        routes = tuple(ROUTES)
        app = build_app(ConsoleConfig(store.url, "memory://", routes, secret="b" * 40), store)
        app.state.accounts.add("bench", "admin", "bench-password-1")
        client = TestClient(app)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)
        client.post("/login", data={"name": "bench", "password": "bench-password-1", "csrf": token})
        key = args.letters * 7 // 9
        seq = store.dead_letters.search(limit=1)[0].seq // 2
        print(f"{'page':28s} {'best of 3':>10s}")
        for name, path in PAGES:
            path = path.format(key=key, seq=seq)
            times = []
            for _ in range(3):
                t = time.monotonic()
                answer = client.get(path)
                times.append(time.monotonic() - t)
                assert answer.status_code == 200, (path, answer.status_code)
            print(f"{name:28s} {min(times) * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
