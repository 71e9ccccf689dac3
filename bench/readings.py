"""Flow 9's throughput: records per second of the readings route through the real worker on
RabbitMQ, next to a bare lxml loop over the same parts, the ratio, and the worker's peak RSS.

The worker is ``gridbus worker`` in a process of its own (so its RSS is its own), on the route
``mdc.daily-frozen-published``, with a store already holding the last reading of ``--points``
metering points (default 1,000,000; pre-filled in a temporary SQLite file, or in a PostgreSQL
schema of the bench's own that is dropped at the end), every tenth benched point in the retail
market (so the trading center's stub gets its chunks), both outputs confirmed and the reply
sent. A part is a batch of its own (``GRIDBUS_BATCH_SIZE=1``, prefetch 2), and the worker runs
``--consumers`` consumers (``GRIDBUS_LANE_CONSUMERS``, default 2). The rate is taken
between the first and the last reply, so start-up is left out: ``(parts - 1) x records / time``.

The bare loop parses each part with lxml, validates it against the XSD and reads every field's
text: no store, no output.

    .venv/bin/python bench/readings.py                       # SQLite, 12 parts of 10,000, 2 consumers
    .venv/bin/python bench/readings.py --store postgresql    # GRIDBUS_TEST_PG_URL, a schema of its own
    .venv/bin/python bench/readings.py --points 100000 --parts 4
    .venv/bin/python bench/readings.py --profile /tmp/readings.prof    # the worker under cProfile

Needs GRIDBUS_TEST_VHOST_PREFIX (the vhost is ``<prefix>-bench-readings``, created and deleted
here) and ``rabbitmqctl``; publishes as ``guest``, which the worker takes as mdc's user.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterator

import pika
from kombu import Connection
from lxml import etree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gridbus.adapters.soap_stub import SoapStub  # noqa: E402
from gridbus.contracts.mdc.daily_frozen import SCHEMA  # noqa: E402
from gridbus.contracts.metering_point import MARKET_POINT, MarketPointData  # noqa: E402
from gridbus.contracts.naming import system_inbox_queue  # noqa: E402
from gridbus.contracts.soap import peer_wsdl  # noqa: E402
from gridbus.mappings.readings.decision import LAST_READING  # noqa: E402
from gridbus.mappings.readings.rules import Held  # noqa: E402
from gridbus.routes.meter_readings import DAILY_FROZEN_PUBLISHED as ROUTE  # noqa: E402
from gridbus.tools.readings_batch import CHINA, DAY, Batch, good_record, meter_no, point_id, register_on, split  # noqa: E402
from gridbus.workers import topology  # noqa: E402
from gridbus.workers.store import Store  # noqa: E402
from gridbus.workers.store.db import to_json  # noqa: E402

PG_URL = os.environ.get("GRIDBUS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextmanager
def bench_store(kind: str, folder: Path) -> Iterator[str]:
    """A bench's store URL: a SQLite file in ``folder``, or a PostgreSQL schema of the bench's
    own (``GRIDBUS_TEST_PG_URL``, never ``public``), dropped when the block ends."""
    if kind != "postgresql":
        yield f"sqlite:///{folder}/store.sqlite3"
        return
    import psycopg

    schema = f"gridbus_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def rabbitmqctl(*args: str) -> str:
    return subprocess.run([shutil.which("rabbitmqctl") or "rabbitmqctl", *args], check=True, capture_output=True,
                          text=True, timeout=120).stdout


def prefill(store: Store, points: int, market_every: int, benched: int) -> float:
    """The last reading (the day before DAY) of ``points`` metering points, written in chunks of
    50,000 rows straight into the records table; seconds it took."""
    started = time.perf_counter()
    yesterday = DAY - timedelta(days=1)
    collected = datetime.combine(DAY, datetime.min.time(), CHINA) + timedelta(minutes=75)
    at = time.time()
    insert = store.db.sql("INSERT INTO records (kind, key, ref, version, data, at) VALUES ({p}, {p}, NULL, 1, {p}, {p})")
    for first in range(1, points + 1, 50_000):
        rows = []
        for n in range(first, min(first + 50_000, points + 1)):
            total = register_on(n, yesterday)
            held = Held(yesterday, collected, meter_no(n), total, split(total), good_record(n, yesterday).multiplier)
            rows.append((LAST_READING, point_id(n), to_json({"last": held.to_data(), "previous": None}), at))
        with store.db.transaction() as cur:
            cur.executemany(insert, rows)
    since = MarketPointData(datetime(2026, 11, 1, tzinfo=CHINA), "RU-BENCH", "91350200776049653A").to_data()
    with store.db.transaction() as cur:
        cur.executemany(insert, [(MARKET_POINT, point_id(n), to_json(since), at) for n in range(1, benched + 1, market_every)])
    return time.perf_counter() - started


def bare_loop(bodies: list[bytes]) -> float:
    """Records per second of parse + XSD validation + reading every field's text, nothing else."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_blank_text=True)
    schema = etree.XMLSchema(etree.parse(str(SCHEMA), parser))
    records = 0
    started = time.perf_counter()
    for body in bodies:
        root = etree.fromstring(body, parser)
        if not schema.validate(root):
            raise SystemExit(f"a bench part does not validate: {schema.error_log}")
        fields = [child.text for child in root[:-1]]
        for record in root[-1]:
            fields = [element.text for element in record]
            records += 1
        del fields
    return records / (time.perf_counter() - started)


def queue_depth(channel, queue: str) -> int:
    return channel.queue_declare(queue=queue, passive=True).message_count


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_pid() -> int | None:
    """The RabbitMQ node's Erlang VM (beam.smp), when it runs on this machine."""
    for status in Path("/proc").glob("[0-9]*/comm"):
        try:
            if status.read_text().strip() == "beam.smp":
                return int(status.parent.name)
        except OSError:
            continue
    return None


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(args) -> None:
    prefix = os.environ.get("GRIDBUS_TEST_VHOST_PREFIX")
    if not prefix:
        raise SystemExit("set GRIDBUS_TEST_VHOST_PREFIX: the bench runs in a vhost <prefix>-bench-readings of its own")
    vhost = f"{prefix}-bench-readings"
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    tmp = Path(tempfile.mkdtemp(prefix="gridbus-bench-readings-"))
    stores = ExitStack()  # closed in the finally below: a PostgreSQL schema is dropped
    store_url = stores.enter_context(bench_store(args.store, tmp))
    benched = args.parts * args.records
    points = max(args.points, benched)
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    worker = None
    try:
        store = Store(store_url)
        print(f"pre-filling the last readings of {points:,} metering points ({args.store}) ...", flush=True)
        print(f"  {prefill(store, points, 10, benched):.1f} s")
        store.close()
        bodies = [
            Batch(f"MDC-BENCH-{p:03d}", DAY, tuple(good_record(n, DAY) for n in range(p * args.records + 1, (p + 1) * args.records + 1)),
                  part_no=p + 1, part_count=args.parts).xml()
            for p in range(args.parts)
        ]
        bare = bare_loop(bodies)
        with Connection(url) as conn:
            topology.declare(conn.default_channel, topology.derive((ROUTE,)))
        with SoapStub(peer_wsdl("tc"), path="/tc") as stub:
            publisher = pika.BlockingConnection(pika.URLParameters(url))
            channel = publisher.channel()
            channel.confirm_delivery()
            for body in bodies:
                channel.basic_publish(ROUTE.source.exchange, ROUTE.source.routing_key, body, pika.BasicProperties(
                    message_id=str(uuid.uuid4()), type="DailyFrozenPublished", user_id="guest", delivery_mode=2,
                    content_type="application/xml"), mandatory=True)
            publisher.close()
            env = {**os.environ, "GRIDBUS_BROKER_URL": url, "GRIDBUS_STORE_URL": store_url,
                   "GRIDBUS_ARCHIVE_INGEST": "false",  # the bench counts dead letters in their queues
                   "GRIDBUS_SOURCE_USERS": json.dumps({"mdc": "guest"}), "GRIDBUS_SOAP_PEERS": f"tc={stub.url}",
                   "GRIDBUS_BATCH_SIZE": "1", "GRIDBUS_PREFETCH": "2", "GRIDBUS_LOG_LEVEL": "WARNING",
                   "GRIDBUS_LANE_CONSUMERS": str(args.consumers),
                   "GRIDBUS_MESSAGE_DEADLINE_S": "600"}
            log = open(tmp / "worker.log", "wb")
            command = [sys.executable, "-m", "gridbus", "worker", "--routes-module", "gridbus.routes.meter_readings:ROUTES"]
            if args.profile:
                command[1:1] = ["-m", "cProfile", "-o", args.profile]
            worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
            replies_queue = system_inbox_queue("mdc")
            times: list[float] = []
            deadline = time.monotonic() + args.timeout
            cpu: list[tuple[float, float]] = []  # (worker, broker) CPU seconds at the first and the last reply
            broker = broker_pid()
            poller = Connection(url)  # one connection for the polls: the broker's time is the worker's
            while len(times) < args.parts and time.monotonic() < deadline and worker.poll() is None:
                depth = queue_depth(poller.default_channel, replies_queue)
                if depth > len(times) and (not times or depth == args.parts):
                    cpu.append((cpu_seconds(worker.pid), cpu_seconds(broker) if broker else float("nan")))
                times += [time.perf_counter()] * (depth - len(times))
                time.sleep(0.05)
            poller.release()
            rss = peak_rss_mb(worker.pid) if worker.poll() is None else float("nan")
            tc_chunks = len(stub.effects("ReceiveMeterReadings"))
        if len(times) < args.parts:
            kept = Path(tempfile.gettempdir()) / "gridbus-bench-readings-worker.log"
            shutil.copy(tmp / "worker.log", kept)
            raise SystemExit(f"only {len(times)} of {args.parts} parts replied; the worker's log is in {kept}")
        if times[-1] - times[0] < 0.2:
            raise SystemExit(f"every reply was seen within {times[-1] - times[0]:.2f} s of the first: too little to time "
                             "(give more or larger --parts), or the queue polls were held up; no rate to take")
        rate = (args.parts - 1) * args.records / (times[-1] - times[0])
        print(f"parts {args.parts} x {args.records:,} records, store {args.store} with {points:,} last readings, "
              f"{tc_chunks} trading-center chunks, one worker with {args.consumers} consumer(s)")
        print(f"end to end (worker, RabbitMQ, store, both outputs, reply): {rate:,.0f} records/s")
        print(f"bare lxml loop (parse, XSD, read fields):                  {bare:,.0f} records/s")
        print(f"ratio: {rate / bare:.2f}; worker peak RSS {rss:.0f} MB; load average {os.getloadavg()[0]:.1f}")
        if len(cpu) == 2:
            span = times[-1] - times[0]
            print(f"CPU while measured: worker {(cpu[1][0] - cpu[0][0]) / span:.0%} of a core, "
                  f"broker {(cpu[1][1] - cpu[0][1]) / span:.0%}")
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(30)
        rabbitmqctl("delete_vhost", vhost)
        stores.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--parts", type=int, default=12)
    parser.add_argument("--consumers", type=int, default=2, help="GRIDBUS_LANE_CONSUMERS of the worker (default 2)")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--profile", metavar="PATH", help="run the worker under cProfile, write its stats to PATH")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
