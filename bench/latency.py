"""Latency benchmark of the black-map route (pms.black-map-published) under a steady offered rate.

In one fresh RabbitMQ vhost that is deleted at the end (also on failure), the real ``gridbus
worker --route pms.black-map-published`` runs as a subprocess (as in ``bench/black_map.py``).
A publisher process offers BlackMapPublished messages into ``pms.out`` as the bench's own pms user (``gridbus-bench-pms``) at a
steady rate (``--rate`` messages a second for ``--seconds``, after ``--warmup`` seconds that are
not counted). Each message's id carries its publish time (``lat-<seq>-<time_ns>``); the
marketing notice the worker sends to ``mkt.in.inbox`` carries that id as its ``correlation_id``,
so the latency of each message is the time its notice arrives at a consumer of the inbox minus
its publish time. Both clocks are the machine's wall clock (one machine, two processes).

Prints the offered and achieved rates, p50/p90/p99/max latency in milliseconds, and checks that
every published message arrived once, with no dead letter, retry or warning in the worker's log.

    .venv/bin/python bench/latency.py --rate 500 --seconds 10
    .venv/bin/python bench/latency.py --rate 1500 --seconds 10
    .venv/bin/python bench/latency.py --rate 500 --linger-ms 20    # GRIDBUS_BATCH_LINGER_MS for the worker

Exit status: 0 when p99 is under ``--target-p99-ms`` (default 50) and nothing went wrong, 1 when
not, 2 when the bench itself could not run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import amqp
import amqp.exceptions
import kombu.exceptions

sys.path.insert(0, str(Path(__file__).resolve().parent))

from black_map import (  # noqa: E402
    DEAD_LETTER_QUEUE,
    EVENTS_COUNT_QUEUE,
    EVENTS_EXCHANGE,
    EXAMPLE,
    INBOX_QUEUE,
    MESSAGE_TYPE,
    PMS_PASSWORD,
    PMS_USER,
    ROUTE,
    SOURCE_EXCHANGE,
    SOURCE_ROUTING_KEY,
    UNROUTED_QUEUE,
    WORK_QUEUE,
    BenchError,
    QueueProbe,
    _route_delay_queues,
    await_broker,
    broker_cpu_seconds,
    black_map_body,
    connect,
    declare_quorum_queue,
    delete_vhost,
    gridbus_command,
    log_problems,
    prepare_vhost,
    rabbitmqctl,
    settle_broker,
    url,
)


# -- the publisher (a process of its own) ---------------------------------------------------------


def publish_steadily(broker_url: str, rate: float, warmup_s: float, seconds: float, results) -> None:
    """Publish at ``rate`` messages a second: message i goes out at ``start + i / rate`` (or at
    once when late). Puts (messages, seconds, published after the warm-up, their seconds)."""
    template = EXAMPLE.read_text(encoding="utf-8")
    conn = connect(broker_url)
    try:
        channel = conn.channel()
        total = int(rate * (warmup_s + seconds))
        warm = int(rate * warmup_s)
        started = time.perf_counter()
        measured_at = None
        for i in range(total):
            due = started + i / rate
            ahead = due - time.perf_counter()
            if ahead > 0.0005:
                time.sleep(ahead)
            if i == warm:
                measured_at = time.perf_counter()
            stamp = f"lat-{i}-{time.time_ns()}" if i >= warm else f"warm-{i}-{time.time_ns()}"
            message = amqp.Message(
                black_map_body(template, i),
                message_id=stamp,
                type=MESSAGE_TYPE,
                user_id=PMS_USER,
                delivery_mode=2,
                content_type="application/xml",
            )
            # Unconfirmed (py-amqp's confirmed publish waits for each ack): that every message
            # arrived is checked at the inbox.
            channel.basic_publish(message, exchange=SOURCE_EXCHANGE, routing_key=SOURCE_ROUTING_KEY)
        ended = time.perf_counter()
        results.put((total, ended - started, total - warm, ended - (measured_at or ended)))
    finally:
        conn.release()


# -- the inbox side --------------------------------------------------------------------------------


class Arrivals:
    """Consumes the inbox (and the events queue, so it does not grow) with auto-ack; keeps each
    notice's arrival time by the inbound message id."""

    def __init__(self, broker_url: str):
        self.conn = connect(broker_url)
        self.channel = self.conn.channel()
        self.arrived: dict[str, int] = {}
        self.duplicates = 0
        self.events = 0
        self.channel.basic_qos(0, 1000, False)
        self.channel.basic_consume(INBOX_QUEUE, callback=self._on_notice, no_ack=True)
        self.channel.basic_consume(EVENTS_COUNT_QUEUE, callback=self._on_event, no_ack=True)

    def _on_notice(self, message) -> None:
        now = time.time_ns()
        source = message.properties.get("correlation_id") or ""
        if source in self.arrived:
            self.duplicates += 1
        else:
            self.arrived[source] = now

    def _on_event(self, _message) -> None:
        self.events += 1

    def drain_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.conn.drain_events(timeout=left)
            except socket.timeout:
                return

    def close(self) -> None:
        try:
            self.conn.release()
        except Exception:  # noqa: BLE001
            pass


def latencies_ms(arrived: dict[str, int]) -> list[float]:
    values = []
    for source, at in arrived.items():
        if source.startswith("lat-"):
            sent = int(source.rsplit("-", 1)[1])
            values.append((at - sent) / 1e6)
    return sorted(values)


def by_second(arrived: dict[str, int]) -> list[tuple[int, float]]:
    """(second of the measured run, p99 of the messages published in it): a transient or a
    steady queue shows here."""
    stamped = sorted((int(s.rsplit("-", 1)[1]), (at - int(s.rsplit("-", 1)[1])) / 1e6)
                     for s, at in arrived.items() if s.startswith("lat-"))
    if not stamped:
        return []
    first = stamped[0][0]
    seconds: dict[int, list[float]] = {}
    for sent, latency in stamped:
        seconds.setdefault((sent - first) // 1_000_000_000, []).append(latency)
    return [(second, percentile(sorted(values), 99)) for second, values in sorted(seconds.items())]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, int(-(-p * len(sorted_values) // 100)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# -- the run ----------------------------------------------------------------------------------------


def run(vhost: str, args, workdir: Path) -> dict:
    broker_url = url(vhost)
    store_path = workdir / "store.sqlite3"
    env = {
        **os.environ,
        "GRIDBUS_BROKER_URL": broker_url,
        "GRIDBUS_STORE_URL": f"sqlite:///{store_path}",
        "GRIDBUS_LOG_LEVEL": "WARNING",
        "GRIDBUS_LOG_FORMAT": "json",
        "GRIDBUS_SOURCE_USERS": json.dumps({"pms": PMS_USER}),
        "GRIDBUS_ARCHIVE_INGEST": "false",  # the bench counts dead letters in their queues
    }
    if args.linger_ms is not None:
        env["GRIDBUS_BATCH_LINGER_MS"] = str(args.linger_ms)
    gridbus = gridbus_command()
    declared = subprocess.run([*gridbus, "topology", "declare"], env=env, capture_output=True, text=True, timeout=120)
    if declared.returncode != 0:
        raise BenchError(f"gridbus topology declare failed: {declared.stderr.strip() or declared.stdout.strip()}")
    admin = connect(broker_url)
    probe = QueueProbe(broker_url)
    arrivals = None
    log_path = workdir / "worker.log"
    try:
        channel = admin.channel()
        declare_quorum_queue(channel, EVENTS_COUNT_QUEUE)
        channel.queue_bind(queue=EVENTS_COUNT_QUEUE, exchange=EVENTS_EXCHANGE, routing_key="#")
        arrivals = Arrivals(broker_url)
        with open(log_path, "wb") as log:
            worker = subprocess.Popen(
                [*gridbus, "worker", "--route", ROUTE], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir
            )
            try:
                deadline = time.monotonic() + 60
                while probe.status(WORK_QUEUE)[1] == 0:
                    if worker.poll() is not None:
                        raise BenchError(f"the worker exited early with status {worker.returncode}; see {log_path}")
                    if time.monotonic() > deadline:
                        raise BenchError("the worker did not subscribe to its work queue within 60 s")
                    time.sleep(0.1)
                settle_broker()
                results = multiprocessing.Queue()
                publisher = multiprocessing.Process(
                    target=publish_steadily,
                    args=(url(vhost, PMS_USER, PMS_PASSWORD), args.rate, args.warmup, args.seconds, results),
                )
                cpu_before, broker_before = _cpu_seconds(worker.pid), broker_cpu_seconds()
                publisher.start()
                while publisher.is_alive():
                    arrivals.drain_for(0.2)
                publisher.join()
                if publisher.exitcode != 0:
                    raise BenchError(f"the publisher failed with status {publisher.exitcode}")
                total, publish_s, measured, measured_s = results.get(timeout=10)
                deadline = time.monotonic() + 30
                while len(arrivals.arrived) < total and time.monotonic() < deadline:
                    arrivals.drain_for(0.2)
                worker_cpu = _cpu_seconds(worker.pid) - cpu_before
                broker_cpu = broker_cpu_seconds() - broker_before
                arrivals.drain_for(0.3)  # anything sent twice
            finally:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    try:
                        worker.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        worker.kill()
                        worker.wait()
        time.sleep(0.5)
        depths = {q: probe.depth(q) for q in (WORK_QUEUE, DEAD_LETTER_QUEUE, UNROUTED_QUEUE)}
        retries = sum(probe.depth(q) for q in _route_delay_queues())
        return {
            "total": total,
            "publish_s": publish_s,
            "measured": measured,
            "measured_s": measured_s,
            "arrived": len(arrivals.arrived),
            "duplicates": arrivals.duplicates,
            "events": arrivals.events,
            "latencies": latencies_ms(arrivals.arrived),
            "worker_cpu": worker_cpu,
            "broker_cpu": broker_cpu,
            "by_second": by_second(arrivals.arrived),
            "exit_status": worker.returncode,
            "depths": depths,
            "retries": retries,
            "problems": log_problems(log_path),
            "store_bytes": _store_bytes(store_path),
        }
    finally:
        if arrivals is not None:
            arrivals.close()
        probe.close()
        admin.release()


def _cpu_seconds(pid: int) -> float:
    from black_map import cpu_seconds

    return cpu_seconds(pid)


def _store_bytes(path: Path) -> int:
    """The SQLite store's size on disk (database and what is left of its log)."""
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="messages offered per second (default 500)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds of publishing (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds published first and not counted (default 1)")
    parser.add_argument("--linger-ms", type=float, default=None, help="GRIDBUS_BATCH_LINGER_MS for the worker")
    parser.add_argument("--target-p99-ms", type=float, default=50.0, help="the verdict's bound on p99 (default 50)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary dir (worker log, store)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="gridbus-latency-"))
    vhost = None
    try:
        await_broker()
        vhost = f"gridbus-latency-{uuid.uuid4().hex[:8]}"
        rabbitmqctl("add_vhost", vhost)
        prepare_vhost(vhost)
        linger = f"GRIDBUS_BATCH_LINGER_MS={args.linger_ms:g}" if args.linger_ms is not None else "default linger"
        print(f"vhost {vhost}, {os.cpu_count()} CPUs, offered {args.rate:g} msg/s for {args.seconds:g} s "
              f"after {args.warmup:g} s warm-up, {linger}")
        result = run(vhost, args, workdir)
        lat = result["latencies"]
        errors = []
        if result["arrived"] != result["total"]:
            errors.append(f"{result['arrived']} of {result['total']} notices arrived")
        if result["duplicates"]:
            errors.append(f"{result['duplicates']} notices arrived twice")
        if any(result["depths"].values()):
            errors.append(", ".join(f"{n} left in {q}" for q, n in result["depths"].items() if n))
        if result["retries"]:
            errors.append(f"{result['retries']} messages in retry delay queues")
        if result["exit_status"] != 0:
            errors.append(f"worker exit status {result['exit_status']} after SIGTERM")
        if result["problems"]:
            errors.append(f"{len(result['problems'])} warning/error lines in the worker log")
        p99 = percentile(lat, 99)
        print(f"achieved rate       : {result['measured'] / result['measured_s']:.0f} msg/s offered over "
              f"{result['measured_s']:.1f} s ({result['total']} msgs in all)")
        print(f"latency (ms)        : p50 {percentile(lat, 50):.1f}  p90 {percentile(lat, 90):.1f}  "
              f"p99 {p99:.1f}  max {lat[-1] if lat else float('nan'):.1f}  "
              f"mean {statistics.fmean(lat) if lat else float('nan'):.1f}  ({len(lat)} measured)")
        print(f"worker CPU          : {result['worker_cpu'] / result['publish_s'] * 100:.0f}% of a core, "
              f"{result['worker_cpu'] / max(result['total'], 1) * 1e6:.0f} us/msg")
        print(f"broker CPU          : {result['broker_cpu'] / result['publish_s'] * 100:.0f}% of a core")
        print("p99 by second (ms)  : " + " ".join(f"{p:.0f}" for _, p in result["by_second"]))
        print(f"store (SQLite)      : {result['store_bytes'] / 1e6:.1f} MB for {result['total']} messages, "
              f"{result['store_bytes'] / max(result['total'], 1):.0f} bytes/msg")
        print(f"errors              : {'; '.join(errors) if errors else 'none'}")
        for line in result["problems"][:5]:
            print(f"  log: {line[:300]}")
        ok = not errors and p99 < args.target_p99_ms
        print(f"verdict             : {'PASS' if ok else 'FAIL'}: p99 {p99:.1f} ms "
              f"{'<' if p99 < args.target_p99_ms else '>='} {args.target_p99_ms:g} ms at {args.rate:g} msg/s"
              + ("" if not errors else ", WITH ERRORS"))
        if errors:
            args.keep_tmp = True
        if args.keep_tmp:
            print(f"worker log and store kept in {workdir}")
        return 0 if ok else 1
    except (BenchError, OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"worker log and store kept in {workdir}", file=sys.stderr)
        args.keep_tmp = True
        return 2
    finally:
        if vhost is not None:
            delete_vhost(vhost)
        if not args.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
