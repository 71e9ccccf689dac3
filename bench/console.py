"""The dead-letter archive at scale: 100,000 letters over 8 routes and 20 error types.

Fills the archive (a temporary SQLite file, and a PostgreSQL schema of its own that is dropped
at the end; never ``public``) through ``store.dead_letters.ingest`` in commits of 2,000, as the
ingester writes them, then times what an operator waits for:

- the grouped overview (route x error type x message type of every unhandled letter);
- a search by business key (one key among 100,000 letters, two keys each);
- showing one letter (its row with properties, headers and body, rendered as ``dlq show`` prints it);
- a search by text in the reason (a scan: for information).

Each is the median of 5 runs (the target is < 1 s). On PostgreSQL the tables are analysed
after the fill, as autovacuum does within a minute of such a change (``autovacuum_naptime``):
before that the planner takes the partial index of unhandled letters for a handful of rows and
a replay of 10,000 chosen letters takes about 20 s to begin (see ``--no-analyze``). Then it replays 10,000 letters of one route
at ``--rate`` (default 1,000/s) into that route's work queue in a RabbitMQ vhost of its own
(``rabbitmqctl``, deleted at the end), and prints the achieved rate and whether every letter
arrived exactly once.

    .venv/bin/python bench/console.py                       # SQLite and PostgreSQL, about 3 minutes
    .venv/bin/python bench/console.py --no-postgresql --letters 20000

Env: GRIDBUS_BENCH_PG_URL (default postgresql://postgres@127.0.0.1:5432/test);
GRIDBUS_TEST_VHOST_PREFIX names the vhost (default ``gridbus-bench``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kombu import Connection  # noqa: E402

from gridbus.routes.model import Route, Source, Step, Target  # noqa: E402
from gridbus.tools.dlq_cli import _render_archived  # noqa: E402
from gridbus.tools.replay import replay  # noqa: E402
from gridbus.workers import headers as H  # noqa: E402
from gridbus.workers import topology  # noqa: E402
from gridbus.workers.store import Store  # noqa: E402
from gridbus.workers.store.dead_letters import NewLetter, Selection, letter_id  # noqa: E402

PG_URL = os.environ.get("GRIDBUS_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROUTES = 8
ERROR_TYPES = 20
DAY_S = 86400.0


class BenchContract:
    message_type = "BenchMessage"


def bench_routes(tag: str) -> list[Route]:
    return [
        Route(
            name=f"bench.console-{tag}-{i}",
            source=Source("pms", f"bench-console-{tag}-{i}.published"),
            contract=BenchContract,
            steps=(Step("forward", lambda message, context: message, Target("mkt", "black_map_notice")),),
        )
        for i in range(ROUTES)
    ]


def letters(routes: list[Route], n: int, now: float):
    """``n`` letters, spread over the routes and error types and over 30 days, two keys each."""
    for i in range(n):
        route = routes[i % ROUTES]
        error = f"error-type-{(i // ROUTES) % ERROR_TYPES:02d}"
        at = now - (i / n) * 30 * DAY_S
        body = (f'<BlackMap><ApplicationNo>HV{i:010d}</ApplicationNo><UserName>用户{i}</UserName>'
                f'<Note>{"x" * 400}</Note></BlackMap>').encode()
        message_id = f"bench-{i:08d}"
        headers = {H.ERROR_TYPE: error, H.ERROR_MESSAGE: f"{error}: element Amount of HV{i:010d} is not a decimal",
                   H.ROUTE: route.name, H.ATTEMPT: 3, H.SOURCE_USER: "pms"}
        properties = {"message_id": message_id, "type": BenchContract.message_type, "delivery_mode": 2,
                      "content_type": "application/xml"}
        yield NewLetter(
            letter_id=letter_id(route.dead_letter_queue, properties, headers, body), route=route.name,
            queue=route.dead_letter_queue, message_id=message_id, message_type=BenchContract.message_type,
            error_type=error, reason=headers[H.ERROR_MESSAGE], first_failure_at=at - 60, last_failure_at=at,
            dead_lettered_at=at, attempts=3, business_keys=(f"HV{i:010d}", f"CUST{i % 5000:05d}"),
            properties=properties, headers=headers, body=body,
        )


def fill(store: Store, routes: list[Route], n: int, batch: int = 2000) -> float:
    began, now, chunk = time.perf_counter(), time.time(), []
    for letter in letters(routes, n, now):
        chunk.append(letter)
        if len(chunk) == batch:
            store.dead_letters.ingest(chunk, at=now)
            chunk = []
    if chunk:
        store.dead_letters.ingest(chunk, at=now)
    return time.perf_counter() - began


def timed(action, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def measure(label: str, store: Store, routes: list[Route], n: int, broker_url: str | None, rate: float,
            analyze: bool = True) -> bool:
    took = fill(store, routes, n)
    print(f"\n{label}: {n:,} letters archived in {took:.1f} s ({n / took:,.0f}/s)")
    if analyze and store.url.startswith("postgresql"):
        _analyze(store.url)
        print("  tables analysed (as autovacuum does)")
    target = n // 2
    seq = store.dead_letters.search(Selection(message_id=f"bench-{target:08d}"))[0].seq
    figures = {
        "grouped overview": timed(lambda: store.dead_letters.groups()),
        "search by business key": timed(lambda: store.dead_letters.search(Selection(key=f"HV{target:010d}"))),
        "search by customer key (20 letters)": timed(lambda: store.dead_letters.search(Selection(key="CUST00042"))),
        "show one letter": timed(lambda: _render_archived(store.dead_letters.get(seq))),
        "search by text in the reason (scan)": timed(
            lambda: store.dead_letters.search(Selection(text=f"HV{target:010d} is not"))),
    }
    groups = store.dead_letters.groups()
    print(f"  {len(groups)} groups")
    ok = True
    for name, seconds in figures.items():
        verdict = "ok" if seconds < 1.0 else "SLOW"
        ok &= seconds < 1.0 or "scan" in name
        print(f"  {name:<40} {seconds * 1000:8.1f} ms  {verdict}")
    if broker_url is not None:
        ok &= replay_bench(store, routes, broker_url, rate)
    return ok


def replay_bench(store: Store, routes: list[Route], broker_url: str, rate: float, count: int = 10_000) -> bool:
    route = routes[0]
    unhandled = store.dead_letters.count(Selection(route=route.name))
    chosen = store.dead_letters.search(Selection(route=route.name), limit=count)
    seqs, expected = [s.seq for s in chosen], {s.message_id for s in chosen}
    if len(seqs) < count:
        print(f"  replay: only {unhandled} letters of {route.name}; skipped")
        return False
    began = time.perf_counter()
    done = replay(broker_url, routes, store, Selection(seqs=tuple(seqs)), rate=rate, operator="bench", chunk=500)
    took = time.perf_counter() - began
    arrived = take(broker_url, route.work_queue, count)
    once = len(arrived) == count and set(arrived) == expected
    print(f"  replay of {done.sent:,} at {rate:,.0f}/s: {took:.1f} s, achieved {done.sent / took:,.0f}/s; "
          f"{len(arrived):,} arrived, {len(set(arrived)):,} distinct, the 10,000 chosen: "
          f"{'each once' if once else 'NOT each once'}")
    return once and done.sent == count


def take(broker_url: str, queue: str, expected: int) -> list[str]:
    """Consume ``queue`` until ``expected`` arrived and then nothing for a second; the message ids."""
    ids: list[str] = []
    with Connection(broker_url) as conn:
        conn.connect()
        ch = conn.connection.channel()
        ch.basic_qos(0, 2000, False)
        ch.basic_consume(queue, callback=lambda m: ids.append(m.properties.get("message_id")), no_ack=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                conn.connection.drain_events(timeout=1.0)
            except TimeoutError:
                if len(ids) >= expected:
                    break
    return ids


def rabbitmqctl(*args: str) -> None:
    subprocess.run([shutil.which("rabbitmqctl") or "rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@contextmanager
def vhost_of_its_own(routes: list[Route]):
    prefix = os.environ.get("GRIDBUS_TEST_VHOST_PREFIX", "gridbus-bench")
    vhost = f"{prefix}-console-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        with Connection(url) as conn:
            topology.declare(conn.default_channel, topology.derive(routes))
        yield url
    finally:
        subprocess.run([shutil.which("rabbitmqctl") or "rabbitmqctl", "delete_vhost", vhost], capture_output=True)


@contextmanager
def pg_schema():
    import psycopg

    schema = f"gridbus_console_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the vhost and schema are removed on the way out
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--letters", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="replay rate, letters per second")
    parser.add_argument("--no-postgresql", action="store_true")
    parser.add_argument("--no-replay", action="store_true", help="no broker: the queries only")
    parser.add_argument("--no-analyze", action="store_true", help="PostgreSQL: measure before the tables are analysed")
    args = parser.parse_args()
    routes = bench_routes(uuid.uuid4().hex[:6])
    ok = True
    with (vhost_of_its_own(routes) if not args.no_replay else _none()) as broker_url:
        with tempfile.TemporaryDirectory(prefix="gridbus-console-") as tmp:
            store = Store(f"sqlite:///{tmp}/store.sqlite3")
            try:
                ok &= measure("SQLite", store, routes, args.letters, broker_url, args.rate)
            finally:
                store.close()
        if not args.no_postgresql:
            with pg_schema() as url:
                store = Store(url)
                try:
                    ok &= measure("PostgreSQL", store, routes, args.letters, broker_url, args.rate,
                                  analyze=not args.no_analyze)
                finally:
                    store.close()
    print("\n" + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


@contextmanager
def _none():
    yield None


if __name__ == "__main__":
    sys.exit(main())
