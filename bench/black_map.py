"""Throughput and memory benchmark of the black-map route (pms.black-map-published).

Runs, in one fresh RabbitMQ vhost that is deleted at the end (also on failure):

1. a baseline: a raw relay written with the same client library (kombu / py-amqp) and no
   processing at all. It consumes a quorum queue with the worker's prefetch, publishes every
   body to a second quorum queue on a connection of its own with publisher confirms awaited
   per batch (the worker's batch size), then acks the batch. Its rate is the ceiling a
   worker can reach on this broker and machine with this client library.
2. the real ``gridbus worker --route pms.black-map-published`` as a subprocess, draining a
   backlog of BlackMapPublished messages published into ``pms.out`` as the ``pms`` user.
   Drained means: the work queue is empty, ``mkt.in.inbox`` holds one BlackMapNotice per
   message and a queue bound to ``gridbus.events`` holds one canonical event per message.

one after the other ``--rounds`` times (default 5), each phase on a quiet broker, and prints
both rates, their ratio (the median of the rounds'), the worker's peak RSS, and what went wrong
if anything (dead letters, retries, unrouted messages, warnings in the worker's log).

    .venv/bin/python bench/black_map.py                      # 20,000 messages
    .venv/bin/python bench/black_map.py --backlog 100000     # the 100k backlog target
    .venv/bin/python bench/black_map.py --messages 5000 --profile /tmp/worker.prof
    .venv/bin/python bench/black_map.py --metrics            # each round's worker also with GRIDBUS_METRICS_PORT set

See bench/README.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import amqp
import amqp.exceptions
import kombu.exceptions
from kombu import Connection, Consumer, Queue

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "contracts" / "examples" / "pms.BlackMapPublished.xml"

ROUTE = "pms.black-map-published"
SOURCE_EXCHANGE = "pms.out"
SOURCE_ROUTING_KEY = "black-map.published"
MESSAGE_TYPE = "BlackMapPublished"
WORK_QUEUE = f"gridbus.{ROUTE}"
DEAD_LETTER_QUEUE = f"gridbus.{ROUTE}.dlq"
UNROUTED_QUEUE = "gridbus.unrouted.dlq"
INBOX_QUEUE = "mkt.in.inbox"
EVENTS_EXCHANGE = "gridbus.events"
EVENTS_COUNT_QUEUE = "bench.events.count"

RELAY_IN = "bench.relay.in"
RELAY_OUTS = ("bench.relay.out", "bench.relay.out2")

#: The worker's defaults (workers/settings.py); the baseline uses the same.
PREFETCH = 200
BATCH_SIZE = 100

#: Targets the verdict is checked against.
TARGET_RATIO = 0.55  # issue 10: kept through the restructuring, median of 5 rounds
TARGET_BACKLOG = 100_000
TARGET_RSS_MB = 200.0

HOST = os.environ.get("GRIDBUS_BENCH_BROKER_HOST", "127.0.0.1")
PORT = int(os.environ.get("GRIDBUS_BENCH_BROKER_PORT", "5672"))
#: The bench's own user for pms (GRIDBUS_SOURCE_USERS maps pms to it): a bench run never
#: changes the password of a user it did not create, such as a deployment's ``pms``.
PMS_USER = os.environ.get("GRIDBUS_BENCH_PMS_USER", "gridbus-bench-pms")
PMS_PASSWORD = os.environ.get("GRIDBUS_BENCH_PMS_PASSWORD", "gridbus-bench")
#: Node name for rabbitmqctl (``-n``) when the bench runs against a node other than the default one.
NODE = os.environ.get("GRIDBUS_BENCH_RABBITMQ_NODE")


class BenchError(RuntimeError):
    pass


# -- broker administration --------------------------------------------------------------------


def rabbitmqctl(*args: str, timeout_s: int = 180) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        raise BenchError("rabbitmqctl is not on PATH: the bench needs the local RabbitMQ")
    try:
        node = ["-n", NODE] if NODE else []
        done = subprocess.run([exe, *node, *args], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"rabbitmqctl {' '.join(args)} did not answer within {timeout_s} s") from None
    if done.returncode != 0:
        raise BenchError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def prepare_vhost(vhost: str) -> None:
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    users = {line.split("\t", 1)[0] for line in rabbitmqctl("list_users", "--quiet").splitlines()}
    if PMS_USER in users:
        rabbitmqctl("change_password", PMS_USER, PMS_PASSWORD)
    else:
        rabbitmqctl("add_user", PMS_USER, PMS_PASSWORD)
    rabbitmqctl("set_permissions", "-p", vhost, PMS_USER, "^$", r"^pms\.out$", "^$")


def await_broker(timeout_s: int = 180) -> None:
    """Wait until the RabbitMQ application runs (another process may have stopped it for a while)."""
    rabbitmqctl("await_startup", "--timeout", str(timeout_s), timeout_s=timeout_s + 30)


def delete_vhost(vhost: str) -> None:
    """Delete the bench's vhost; when the broker application is down, wait for it and try again."""
    error: Exception | None = None
    for _ in range(3):
        try:
            rabbitmqctl("delete_vhost", vhost)
            return
        except Exception as exc:  # noqa: BLE001 - report, never mask the run's own failure
            if "does not exist" in str(exc) or "no_such_vhost" in str(exc):
                return
            error = exc
        try:
            await_broker()
        except Exception:  # noqa: BLE001
            pass
    print(f"warning: could not delete vhost {vhost}: {error}", file=sys.stderr)


def url(vhost: str, user: str = "guest", password: str = "guest") -> str:
    return f"amqp://{user}:{password}@{HOST}:{PORT}/{vhost}"


def connect(broker_url: str) -> Connection:
    conn = Connection(broker_url, connect_timeout=10, heartbeat=0)
    conn.ensure_connection(max_retries=2)
    return conn


class QueueProbe:
    """Queue depths (ready messages) and consumer counts by passive declare, on its own connection."""

    def __init__(self, broker_url: str):
        self.conn = connect(broker_url)
        self.channel = self.conn.channel()

    def status(self, queue: str) -> tuple[int, int]:
        ok = self.channel.queue_declare(queue=queue, passive=True)
        return ok.message_count, ok.consumer_count

    def depth(self, queue: str) -> int:
        return self.status(queue)[0]

    def close(self) -> None:
        try:
            self.conn.release()
        except Exception:  # noqa: BLE001
            pass


def declare_quorum_queue(channel, name: str) -> None:
    channel.queue_declare(queue=name, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})


# -- confirmed publishing in batches (py-amqp) ----------------------------------------------------


class ConfirmedPublisher:
    """Publishes on a channel of its own connection; ``wait()`` blocks until every message
    published since the last wait is confirmed (raises on a nack or an unroutable message)."""

    def __init__(self, conn: Connection, *, timeout_s: float = 30.0):
        self.conn = conn
        self.timeout_s = timeout_s
        self.channel = conn.channel()
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.channel.events["basic_return"].add(self._on_return)
        self._seq = 0
        self._pending: set[int] = set()
        self._failure: str | None = None

    def _settle(self, tag: int, multiple: bool) -> None:
        if multiple:
            self._pending = {t for t in self._pending if t > tag}
        else:
            self._pending.discard(tag)

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)
        self._failure = self._failure or f"broker nacked delivery tag {delivery_tag}"

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        self._failure = self._failure or f"unroutable: exchange {exchange!r} routing key {routing_key!r}"

    def publish(self, message: amqp.Message, exchange: str, routing_key: str) -> None:
        self._seq += 1
        self._pending.add(self._seq)
        self.channel.basic_publish(message, exchange=exchange, routing_key=routing_key, mandatory=True)

    def wait(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{len(self._pending)} publisher confirms missing after {self.timeout_s:g} s")
            try:
                self.conn.drain_events(timeout=remaining)
            except socket.timeout:
                continue
        if self._failure:
            raise BenchError(self._failure)


def black_map_body(template: str, i: int) -> bytes:
    """The example document with a distinct ApplicationNo (``HV2026`` + 9 digits, schema-valid)."""
    return template.replace("HV2026110300017", f"HV2026{i:09d}").encode("utf-8")


def load(broker_url: str, exchange: str, routing_key: str, n: int, make, *, window: int = 2000) -> float:
    """Publish ``n`` messages ``make(i) -> amqp.Message`` with confirms awaited every ``window``; returns msg/s."""
    conn = connect(broker_url)
    try:
        publisher = ConfirmedPublisher(conn, timeout_s=60.0)
        started = time.perf_counter()
        for i in range(n):
            publisher.publish(make(i), exchange, routing_key)
            if (i + 1) % window == 0:
                publisher.wait()
        publisher.wait()
        return n / (time.perf_counter() - started)
    finally:
        conn.release()


def wait_for_depth(probe: QueueProbe, queue: str, expected: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (depth := probe.depth(queue)) < expected:
        if time.monotonic() > deadline:
            raise BenchError(f"queue {queue} holds {depth} messages, expected {expected}")
        time.sleep(0.1)


# -- 1. baseline: raw relay ---------------------------------------------------------------------


def run_baseline(vhost: str, n: int, template: str, *, outputs: int = 1, tag: str = "") -> dict:
    """Relay ``n`` messages; ``outputs=2`` publishes every body to two queues (the black-map
    route has two outputs: the notice and the canonical event)."""
    broker_url = url(vhost)
    # Queues of each run's own (none is deleted, see below): ".<tag>", ".2-outputs".
    suffix = (f".{tag}" if tag else "") + ("" if outputs == 1 else f".{outputs}-outputs")
    relay_in = RELAY_IN + suffix
    targets = tuple(queue + suffix for queue in RELAY_OUTS[:outputs])
    admin = connect(broker_url)
    probe = QueueProbe(broker_url)
    try:
        channel = admin.channel()
        for queue in (relay_in, *targets):
            declare_quorum_queue(channel, queue)

        def make(i: int) -> amqp.Message:
            return amqp.Message(
                black_map_body(template, i),
                message_id=str(uuid.uuid4()),
                type=MESSAGE_TYPE,
                delivery_mode=2,
                content_type="application/xml",
            )

        load_rate = load(broker_url, "", relay_in, n, make)
        wait_for_depth(probe, relay_in, n)
        settle_broker()

        consumer_conn = connect(broker_url)
        publisher_conn = connect(broker_url)
        try:
            publisher = ConfirmedPublisher(publisher_conn)
            buffer: list = []
            consumer = Consumer(
                consumer_conn.channel(),
                queues=[Queue(relay_in, no_declare=True)],
                on_message=buffer.append,
                prefetch_count=PREFETCH,
            )
            done = 0
            started, cpu_started = time.perf_counter(), time.process_time()
            ctx0 = read_proc_status(os.getpid())
            broker_cpu_started = broker_cpu_seconds()
            consumer.consume()
            quiet_since = time.monotonic()
            while done < n:
                _fill(consumer_conn, buffer, BATCH_SIZE, 0.2)
                if not buffer:
                    if time.monotonic() - quiet_since > 30:
                        raise BenchError(f"baseline relay stalled after {done} of {n} messages")
                    continue
                quiet_since = time.monotonic()
                batch = buffer[:]
                buffer.clear()
                for message in batch:
                    body = message.body if isinstance(message.body, bytes) else message.body.encode("utf-8")
                    for target in targets:
                        publisher.publish(amqp.Message(body, delivery_mode=2), "", target)
                publisher.wait()
                for message in batch:
                    message.ack()
                done += len(batch)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            switches = _switches(ctx0, read_proc_status(os.getpid()))
            broker_cpu = broker_cpu_seconds() - broker_cpu_started
            consumer.cancel()
        finally:
            consumer_conn.release()
            publisher_conn.release()
        for target in targets:
            wait_for_depth(probe, target, n)
        left = probe.depth(relay_in)
        if left:
            raise BenchError(f"baseline: {left} messages left in {relay_in}")
        # The queues go with the vhost at the end. Deleting a quorum queue right after draining it
        # can crash RabbitMQ 3.10's Ra segment writer (a truncation of the deleted queue's segments
        # finds their files gone: {badmatch,{error,enoent}}, "wal_down"), failing every connection.
        return {
            "messages": n,
            "outputs": outputs,
            "seconds": elapsed,
            "rate": n / elapsed,
            "load_rate": load_rate,
            "cpu_us": cpu / n * 1e6,
            "cpu_share": cpu / elapsed,
            "switches": switches,
            "broker_cpu_share": broker_cpu / elapsed,
        }
    finally:
        probe.close()
        admin.release()


def _fill(conn, buffer: list, batch_size: int, idle_timeout_s: float) -> None:
    """The worker's own fill loop (workers/intake.py ``Intake.fill``)."""
    deadline = time.monotonic() + idle_timeout_s
    while len(buffer) < batch_size:
        timeout = deadline - time.monotonic() if not buffer else 0.005
        if timeout <= 0:
            return
        try:
            conn.drain_events(timeout=timeout)
        except socket.timeout:
            if buffer or time.monotonic() >= deadline:
                return


# -- 2. the gridbus worker ------------------------------------------------------------------------


def gridbus_command() -> list[str]:
    script = Path(sys.executable).with_name("gridbus")
    if not script.exists():
        found = shutil.which("gridbus")
        if found is None:
            raise BenchError("the gridbus command is not installed (pip install -e . in the venv)")
        script = Path(found)
    return [sys.executable, str(script)]


def read_proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB, and its context switches so far (empty when the process
    is gone)."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:", "voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    key, value = line.split(":", 1)
                    values[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def _switches(before: dict[str, int], after: dict[str, int]) -> tuple[int, int]:
    """(voluntary, involuntary) context switches between two ``read_proc_status`` readings:
    waits for I/O, and the times the process was preempted for another one."""
    return tuple(after.get(key, 0) - before.get(key, 0) for key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def broker_cpu_seconds() -> float:
    """CPU time of the local RabbitMQ (every beam.smp process), to see whether the broker is the limit."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() != "beam.smp":
                        continue
            except OSError:
                continue
            total += cpu_seconds(int(entry))
    return total


def settle_broker(quiet_share: float = 0.15, window_s: float = 0.5, max_s: float = 30.0) -> float:
    """Wait until the broker uses less than ``quiet_share`` of a core over ``window_s`` (at most
    ``max_s``): what the previous phase left it to do (quorum queue logs written to segments,
    purges) must not run during the next measured phase. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_s:
        before = broker_cpu_seconds()
        time.sleep(window_s)
        if broker_cpu_seconds() - before < quiet_share * window_s:
            break
    return time.monotonic() - started


def log_problems(log_path: Path) -> list[str]:
    """Lines of the worker's log at warning level or above, and anything that is not JSON (tracebacks)."""
    problems = []
    with open(log_path, encoding="utf-8", errors="replace") as log:
        for line in log:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                problems.append(line)
                continue
            if str(record.get("level", "")).lower() in ("warning", "error", "critical", "exception"):
                problems.append(line)
    return problems


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_delivered(port: int) -> float | None:
    """``gridbus_messages_total{outcome="delivered"}`` of the route, from the worker's /metrics (None: no answer)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gridbus_messages_total" and sample.labels == {"route": ROUTE, "outcome": "delivered"}:
                return sample.value
    return None


def run_worker(
    vhost: str, n: int, template: str, workdir: Path, *, log_level: str, profile: str | None, tag: str = "",
    fast_path: bool = True, metrics: bool = False,
) -> dict:
    """metrics: with GRIDBUS_METRICS_PORT set, /metrics scraped every second as a (busy)
    Prometheus would, and its count of delivered messages checked at the end."""
    broker_url = url(vhost)
    metrics_port = free_port() if metrics else None
    env = {
        **os.environ,
        "GRIDBUS_AMQP_FAST_PATH": "true" if fast_path else "false",
        "GRIDBUS_BROKER_URL": broker_url,
        "GRIDBUS_STORE_URL": f"sqlite:///{workdir / f'store-{log_level.lower()}{tag}.sqlite3'}",
        "GRIDBUS_LOG_LEVEL": log_level,
        "GRIDBUS_LOG_FORMAT": "json",
        "GRIDBUS_SOURCE_USERS": json.dumps({"pms": PMS_USER}),
        "GRIDBUS_ARCHIVE_INGEST": "false",  # the bench counts dead letters in their queues
    }
    env.pop("GRIDBUS_METRICS_PORT", None)
    if metrics_port is not None:
        env.update(GRIDBUS_METRICS_PORT=str(metrics_port), GRIDBUS_METRICS_HOST="127.0.0.1")
    gridbus = gridbus_command()
    declared = subprocess.run([*gridbus, "topology", "declare"], env=env, capture_output=True, text=True, timeout=120)
    if declared.returncode != 0:
        raise BenchError(f"gridbus topology declare failed: {declared.stderr.strip() or declared.stdout.strip()}")

    probe = QueueProbe(broker_url)
    admin = connect(broker_url)
    try:
        channel = admin.channel()
        declare_quorum_queue(channel, EVENTS_COUNT_QUEUE)
        channel.queue_bind(queue=EVENTS_COUNT_QUEUE, exchange=EVENTS_EXCHANGE, routing_key="#")
        outputs = (INBOX_QUEUE, EVENTS_COUNT_QUEUE)
        checked = (WORK_QUEUE, DEAD_LETTER_QUEUE, UNROUTED_QUEUE, *outputs)
        for queue in checked:
            channel.queue_purge(queue=queue)  # a second run in the same vhost starts from empty queues

        def make(i: int) -> amqp.Message:
            return amqp.Message(
                black_map_body(template, i),
                message_id=str(uuid.uuid4()),
                type=MESSAGE_TYPE,
                user_id=PMS_USER,
                delivery_mode=2,
                content_type="application/xml",
            )

        load_rate = load(url(vhost, PMS_USER, PMS_PASSWORD), SOURCE_EXCHANGE, SOURCE_ROUTING_KEY, n, make)
        wait_for_depth(probe, WORK_QUEUE, n)
        settle_broker()

        command = [*gridbus, "worker", "--route", ROUTE]
        if profile:
            command = [sys.executable, "-m", "cProfile", "-o", profile, *command[1:]]
        log_path = workdir / f"worker-{log_level.lower()}{tag}.log"
        peak_rss_kb = hwm_kb = 0
        samples: list[tuple[float, int, int]] = []  # (seconds since consuming began, work queue depth, inbox depth)
        scraped_at, scraped = 0.0, None
        with open(log_path, "wb") as log:
            spawned = time.perf_counter()
            worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
            try:
                consuming = None
                last_progress, last_inbox = time.monotonic(), -1
                while True:
                    if worker.poll() is not None:
                        raise BenchError(f"the worker exited early with status {worker.returncode}; see {log_path}")
                    work, consumers = probe.status(WORK_QUEUE)
                    inbox, events = probe.depth(INBOX_QUEUE), probe.depth(EVENTS_COUNT_QUEUE)
                    now = time.perf_counter()
                    if consuming is None and (consumers or work < n):
                        consuming = now
                        cpu_at_start, broker_cpu_at_start = cpu_seconds(worker.pid), broker_cpu_seconds()
                        ctx0 = read_proc_status(worker.pid)
                    mem = read_proc_status(worker.pid)
                    peak_rss_kb = max(peak_rss_kb, mem.get("VmRSS", 0))
                    hwm_kb = max(hwm_kb, mem.get("VmHWM", 0))
                    if consuming is not None:
                        samples.append((now - consuming, work, inbox))
                    if work == 0 and inbox >= n and events >= n:
                        finished = now
                        worker_cpu = cpu_seconds(worker.pid) - cpu_at_start
                        switches = _switches(ctx0, read_proc_status(worker.pid))
                        broker_cpu = broker_cpu_seconds() - broker_cpu_at_start
                        break
                    if metrics_port is not None and time.monotonic() - scraped_at >= 1.0:
                        scraped_at, scraped = time.monotonic(), scrape_delivered(metrics_port)
                    if inbox != last_inbox:
                        last_progress, last_inbox = time.monotonic(), inbox
                    elif time.monotonic() - last_progress > 60:
                        log.flush()
                        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
                        raise BenchError(
                            f"no progress for 60 s: work queue {work}, inbox {inbox}, events {events}; "
                            f"worker log {log_path} ends with: " + (" | ".join(tail) or "(nothing)")
                        )
                    time.sleep(0.1)
                hwm_kb = max(hwm_kb, read_proc_status(worker.pid).get("VmHWM", 0))
                if metrics_port is not None:  # the last batch's outputs arrive before it is acked and counted
                    deadline = time.monotonic() + 5
                    while (scraped := scrape_delivered(metrics_port)) != n and time.monotonic() < deadline:
                        time.sleep(0.1)
            finally:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
                    try:
                        worker.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        worker.kill()
                        worker.wait()
        exit_status = worker.returncode

        time.sleep(0.5)  # let the broker return anything left unacked
        depths = {queue: probe.depth(queue) for queue in checked}
        retries = sum(probe.depth(q) for q in _route_delay_queues())
        problems = log_problems(log_path)
        drain_s = finished - consuming
        return {
            "messages": n,
            "log_level": log_level,
            "load_rate": load_rate,
            "startup_s": consuming - spawned,
            "seconds": drain_s,
            "rate": n / drain_s,
            "rate_incl_startup": n / (finished - spawned),
            "peak_rss_mb": max(peak_rss_kb, hwm_kb) / 1024,
            "cpu_us": worker_cpu / n * 1e6,
            "cpu_share": worker_cpu / drain_s,
            "switches": switches,
            "broker_cpu_share": broker_cpu / drain_s,
            "depths": depths,
            "retries": retries,
            "exit_status": exit_status,
            "problems": problems,
            "log": str(log_path),
            "samples": samples,
            "metrics_delivered": scraped,
            "metrics": metrics,
        }
    finally:
        probe.close()
        admin.release()


def _route_delay_queues() -> list[str]:
    from gridbus.routes import ROUTES

    route = next(r for r in ROUTES if r.name == ROUTE)
    return [route.delay_queue(d) for d in route.retry.delay_tiers]


def worker_errors(result: dict, n: int) -> list[str]:
    d = result["depths"]
    errors = []
    if d[WORK_QUEUE]:
        errors.append(f"{d[WORK_QUEUE]} messages left in the work queue")
    if d[DEAD_LETTER_QUEUE]:
        errors.append(f"{d[DEAD_LETTER_QUEUE]} dead letters")
    if d[UNROUTED_QUEUE]:
        errors.append(f"{d[UNROUTED_QUEUE]} unrouted messages")
    if result.get("metrics") and result.get("metrics_delivered") != n:
        errors.append(f"/metrics counted {result.get('metrics_delivered')} delivered messages, not {n}")
    if result["retries"]:
        errors.append(f"{result['retries']} messages waiting in retry delay queues")
    if d[INBOX_QUEUE] != n:
        errors.append(f"{d[INBOX_QUEUE]} notices in {INBOX_QUEUE}, expected {n}")
    if d[EVENTS_COUNT_QUEUE] != n:
        errors.append(f"{d[EVENTS_COUNT_QUEUE]} canonical events, expected {n}")
    if result["exit_status"] != 0:
        errors.append(f"worker exit status {result['exit_status']} after SIGTERM")
    if result["problems"]:
        errors.append(f"{len(result['problems'])} warning/error lines in the worker log")
    return errors


# -- report -------------------------------------------------------------------------------------


def print_profile(path: str, top: int = 25) -> None:
    import pstats

    for key in ("cumulative", "tottime"):
        print(f"\n--- worker profile, top {top} by {key} ({path}) ---")
        pstats.Stats(path).sort_stats(key).print_stats(top)


def print_progress(samples: list[tuple[float, int, int]], n: int) -> None:
    """Inbox depth at a few points of the drain, to show whether the rate holds over the backlog."""
    if len(samples) < 4:
        return
    marks = []
    for fraction in (0.25, 0.5, 0.75, 1.0):
        target = n * fraction
        hit = next((s for s in samples if s[2] >= target), samples[-1])
        marks.append(f"{int(fraction * 100)}% at {hit[0]:.1f} s")
    print(f"  progress (notices in inbox): {', '.join(marks)}")


def _median_note(rounds: list) -> str:
    return f"   (median of {len(rounds)} rounds)" if len(rounds) > 1 else ""


def _cpu(result: dict, who: str) -> str:
    waits, preempted = result["switches"]
    return (
        f"{who} CPU {result['cpu_us']:.0f} us/msg, {result['cpu_share'] * 100:.0f}% of a core, "
        f"{waits / result['seconds']:.0f} waits/s and {preempted / result['seconds']:.0f} preemptions/s; "
        f"broker {result['broker_cpu_share'] * 100:.0f}% of a core"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run (default 20000)")
    parser.add_argument(
        "--backlog", type=int, default=None,
        help="backlog mode: the worker drains this many messages (the target is 100000); "
        "the baseline still uses --messages",
    )
    parser.add_argument("--also-info", action="store_true", help="a second worker run with GRIDBUS_LOG_LEVEL=INFO")
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw relay (no ratio)")
    parser.add_argument(
        "--no-slow-path", action="store_true",
        help="skip the extra relay and worker run with GRIDBUS_AMQP_FAST_PATH=false (printed for information)",
    )
    parser.add_argument(
        "--metrics", action="store_true",
        help="each round also runs the worker with GRIDBUS_METRICS_PORT set (/metrics scraped every second), "
        "off and on in alternating order, and prints the rates side by side",
    )
    parser.add_argument("--profile", metavar="PATH", help="run the worker under cProfile, write the stats to PATH")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary dir (worker logs, store)")
    parser.add_argument(
        "--rounds", type=int, default=None,
        help="relay and worker runs, one after the other, this many times; the ratio is the median of "
        "the rounds' ratios (default 5; 1 with --backlog or --profile)",
    )
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if (args.backlog or args.profile) else 5
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    worker_n = args.backlog or args.messages
    template = EXAMPLE.read_text(encoding="utf-8")
    workdir = Path(tempfile.mkdtemp(prefix="gridbus-bench-"))
    vhost = None
    try:
        await_broker()
        # GRIDBUS_TEST_VHOST_PREFIX: a checkout's own prefix, as for the tests
        prefix = os.environ.get("GRIDBUS_TEST_VHOST_PREFIX", "gridbus")
        vhost = f"{prefix}-bench-{uuid.uuid4().hex[:8]}"  # named first, so that cleanup covers a failed add_vhost
        rabbitmqctl("add_vhost", vhost)
        prepare_vhost(vhost)
        print(f"vhost {vhost}, {os.cpu_count()} CPUs, prefetch {PREFETCH}, batch {BATCH_SIZE}")

        baseline2 = None
        rounds: list[tuple[dict | None, dict]] = []  # (relay, worker), run one after the other
        metered_runs: list[tuple[dict, dict]] = []  # (metrics off, metrics on) of each round
        for number in range(1, args.rounds + 1):
            label = f" {number}" if args.rounds > 1 else ""
            baseline = None
            if not args.no_baseline:
                baseline = run_baseline(vhost, args.messages, template, tag=f"r{number}")
                print(
                    f"baseline raw relay{label:<6}: {baseline['rate']:6.0f} msg/s  ({baseline['messages']} msgs in "
                    f"{baseline['seconds']:.1f} s; {_cpu(baseline, 'relay')}; pre-load {baseline['load_rate']:.0f} msg/s)"
                )
                if baseline2 is None:
                    baseline2 = run_baseline(vhost, args.messages, template, outputs=2, tag=f"r{number}")
                    print(
                        f"raw relay, 2 outputs    : {baseline2['rate']:6.0f} msg/s  ({baseline2['messages']} msgs in "
                        f"{baseline2['seconds']:.1f} s; {_cpu(baseline2, 'relay')})"
                    )
            metered = None
            if args.metrics and number % 2 == 0:  # even rounds: metrics on first
                metered = run_worker(vhost, worker_n, template, workdir, log_level="WARNING", profile=None,
                                     tag=f"-r{number}-metrics", metrics=True)
            result = run_worker(vhost, worker_n, template, workdir, log_level="WARNING",
                                profile=args.profile if number == 1 else None, tag=f"-r{number}")
            if args.metrics and metered is None:
                metered = run_worker(vhost, worker_n, template, workdir, log_level="WARNING", profile=None,
                                     tag=f"-r{number}-metrics", metrics=True)
            print(
                f"gridbus worker{label:<10}: {result['rate']:6.0f} msg/s  ({worker_n} msgs in {result['seconds']:.1f} s "
                f"after {result['startup_s']:.1f} s start-up, {result['rate_incl_startup']:.0f} msg/s including it; "
                f"{_cpu(result, 'worker')}; pre-load {result['load_rate']:.0f} msg/s)"
            )
            print_progress(result["samples"], worker_n)
            if metered is not None:
                print(
                    f"gridbus worker, metrics{label:<1}: {metered['rate']:6.0f} msg/s  ({_cpu(metered, 'worker')}; "
                    f"/metrics counted {metered['metrics_delivered']:.0f} delivered)"
                )
                metered_runs.append((result, metered))
            if baseline:
                print(f"  ratio{label}: {result['rate'] / baseline['rate']:.2f}")
            rounds.append((baseline, result))
        info_run = None
        if args.also_info:
            info_run = run_worker(vhost, worker_n, template, workdir, log_level="INFO", profile=None)
            print(
                f"gridbus worker INFO     : {info_run['rate']:6.0f} msg/s  ({worker_n} msgs in {info_run['seconds']:.1f} s; "
                f"{_cpu(info_run, 'worker')})"
            )

        slow = None  # the fast path off, next to a relay run of its own: for information, not the verdict
        if not (args.no_slow_path or args.no_baseline or args.backlog or args.profile):
            slow_relay = run_baseline(vhost, args.messages, template, tag="slow")
            slow_worker = run_worker(vhost, worker_n, template, workdir, log_level="WARNING", profile=None,
                                     tag="-slow", fast_path=False)
            slow = slow_worker["rate"] / slow_relay["rate"]
            print(
                f"fast path off         : {slow_worker['rate']:6.0f} msg/s next to a relay at {slow_relay['rate']:.0f} "
                f"msg/s (GRIDBUS_AMQP_FAST_PATH=false; errors: {worker_errors(slow_worker, worker_n) or 'none'})"
            )

        results = [worker for _, worker in rounds]
        main_run = max(results, key=lambda r: r["peak_rss_mb"])  # the RSS figure is the highest of the rounds
        errors = [f"round {n}: {e}" if len(results) > 1 else e
                  for n, worker in enumerate(results, 1) for e in worker_errors(worker, worker_n)]
        errors += [f"round {n}, metrics on: {e}"
                   for n, (_, metered) in enumerate(metered_runs, 1) for e in worker_errors(metered, worker_n)]
        ratios = [worker["rate"] / relay["rate"] for relay, worker in rounds if relay]
        ratio = statistics.median(ratios) if ratios else None
        print()
        if ratios:
            print(f"baseline msg/s      : {statistics.median(r['rate'] for r, _ in rounds):.0f}" + _median_note(rounds))
        print(f"gridbus msg/s       : {statistics.median(w['rate'] for w in results):.0f}"
              + (" (under cProfile: not a benchmark figure)" if args.profile else "") + _median_note(rounds))
        if info_run is not None:
            print(f"gridbus msg/s, INFO : {info_run['rate']:.0f}")
        if metered_runs:
            off = statistics.median(o["rate"] for o, _ in metered_runs)
            on = statistics.median(m["rate"] for _, m in metered_runs)
            each = ", ".join(f"{m['rate'] / o['rate']:.3f}" for o, m in metered_runs)
            print(f"metrics off / on    : {off:.0f} / {on:.0f} msg/s, on/off {on / off:.3f} (rounds: {each}); CPU "
                  f"{statistics.median(o['cpu_us'] for o, _ in metered_runs):.0f} / "
                  f"{statistics.median(m['cpu_us'] for _, m in metered_runs):.0f} us/msg")
        if ratio is not None:
            each = f"; rounds: {', '.join(f'{r:.2f}' for r in ratios)}" if len(ratios) > 1 else ""
            print(f"ratio gridbus/base  : {ratio:.3f}   (target >= {TARGET_RATIO}{each})")
            print(f"ratio vs 2-output relay: {results[0]['rate'] / baseline2['rate']:.2f}   (round 1, for information)")
        if slow is not None:
            print(f"ratio, fast path off: {slow:.3f}   (one round, for information)")
        print(
            f"CPU per message     : worker {statistics.median(w['cpu_us'] for w in results):.0f} us"
            + (f", raw relay {statistics.median(r['cpu_us'] for r, _ in rounds):.0f} us" if ratios else "")
            + _median_note(rounds)
        )
        print(f"worker peak RSS     : {main_run['peak_rss_mb']:.1f} MB   (VmHWM; target < {TARGET_RSS_MB:.0f} MB)")
        print(f"dead letters        : {main_run['depths'][DEAD_LETTER_QUEUE]}")
        print(f"outputs             : {main_run['depths'][INBOX_QUEUE]} notices in {INBOX_QUEUE}, "
              f"{main_run['depths'][EVENTS_COUNT_QUEUE]} canonical events")
        print(f"errors              : {'; '.join(errors) if errors else 'none'}")
        for line in main_run["problems"][:5]:
            print(f"  log: {line[:300]}")
        if info_run is not None and worker_errors(info_run, worker_n):
            print(f"errors (INFO run): {'; '.join(worker_errors(info_run, worker_n))}")

        verdict = []
        ok = not errors
        if ratio is not None:
            ratio_ok = ratio >= TARGET_RATIO
            ok &= ratio_ok
            verdict.append(f"ratio {ratio:.3f} {'>=' if ratio_ok else '<'} {TARGET_RATIO}")
        rss_ok = main_run["peak_rss_mb"] < TARGET_RSS_MB
        ok &= rss_ok
        verdict.append(f"peak RSS {main_run['peak_rss_mb']:.0f} MB {'<' if rss_ok else '>='} {TARGET_RSS_MB:.0f} MB")
        if worker_n >= TARGET_BACKLOG:
            verdict.append(f"{worker_n} drained {'with no error' if not errors else 'WITH ERRORS'}")
        else:
            verdict.append(f"backlog target not exercised ({worker_n} < {TARGET_BACKLOG}; use --backlog {TARGET_BACKLOG})")
            verdict.append("no errors" if not errors else "ERRORS")
        print(f"verdict             : {'PASS' if ok else 'FAIL'}: {', '.join(verdict)}")

        if args.profile:
            print_profile(args.profile)
        if errors:
            args.keep_tmp = True
        if args.keep_tmp:
            print(f"worker logs and store kept in {workdir}")
        return 0 if ok else 1
    except (BenchError, OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as exc:
        print(f"bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        if not isinstance(exc, BenchError):
            print(
                "the broker connection failed: if another process stopped or restarted RabbitMQ "
                "(rabbitmqctl stop_app, fault tests), run the bench again",
                file=sys.stderr,
            )
        print(f"worker logs and store kept in {workdir}", file=sys.stderr)
        args.keep_tmp = True
        return 2
    finally:
        if vhost is not None:
            delete_vhost(vhost)
        if not args.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
