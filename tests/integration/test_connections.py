"""The worker's connections as the broker sees them: named, with heartbeats that a silent broker
cannot outlast, passwords never in the logs, and a reconnect back-off that starts again once a
connection has served.

Connections are found by the broker's view (``rabbitmqctl list_connections``) in this test
run's own vhost, and only the worker's own are closed.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import uuid
from collections import Counter
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from tests.conftest import BROKER_HOST, VHOST_PREFIX, rabbitmqctl
from tests.support.amqp import (
    UpstreamSystem, body_json, declare_routes, inbox_reader, running_worker, wait_for,
)
from tests.support.connections import FreezableProxy, gridbus_connections
from tests.support.processes import WorkerProcess
from tests.support.routes import AMQP_ONLY_NOTES, note_body
from gridbus.workers.amqp import BufferedTCPTransport
from gridbus.workers.runtime import RECONNECT_FIRST_S

pytestmark = [pytest.mark.broker]

ROUTES_MODULE = "tests.support.routes:SUBPROCESS_ROUTES"


def port_of(url: str) -> int:
    return urlsplit(url).port or 5672


@pytest.fixture
def pms(broker_url, vhost, system_users):
    declare_routes(broker_url, [AMQP_ONLY_NOTES])
    system = UpstreamSystem(vhost, *system_users["pms"], host=BROKER_HOST, port=port_of(broker_url))
    yield system
    system.close()


def publish(pms, key, texts):
    return [pms.publish("pms.out", "note.amqp", note_body(key, t), message_type="Note") for t in texts]


def delivered(inbox, key) -> Counter:
    return Counter(body_json(m)["text"] for m in inbox.where(lambda m: body_json(m)["key"] == key))


def log_events(worker: WorkerProcess, event: str) -> list[dict]:
    events = []
    for line in worker.logs().splitlines():
        if line.startswith("{") and f'"event": "{event}"' in line:
            events.append(json.loads(line))
    return events


def at(entry: dict) -> float:
    return datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()


def test_worker_connections_are_named_and_negotiate_the_heartbeat(broker_url, vhost, store, pms):
    with running_worker([AMQP_ONLY_NOTES], broker_url, store, heartbeat_s=5, name="named") as worker:
        ours = wait_for(lambda: (c := gridbus_connections(rabbitmqctl, vhost, os.getpid())) and len(c) == 2 and c,
                        what="both connections listed")
        assert worker.fast_path
    host = socket.gethostname()
    assert sorted(c["connection_name"] for c in ours) == [
        f"gridbus named@{host} pid {os.getpid()} consumer", f"gridbus named@{host} pid {os.getpid()} publisher",
    ]
    assert [c["timeout"] for c in ours] == [5, 5]


def test_a_silent_broker_is_noticed_within_two_heartbeats_and_the_next_node_taken(broker_url, vhost, store, pms):
    """Behind a proxy that stops forwarding (the broker's host gone, a half-open connection),
    the worker drops the connection after two silent heartbeat intervals and moves to the next
    node, on the fast path, and keeps delivering."""
    proxy = FreezableProxy((BROKER_HOST, port_of(broker_url)))
    via_proxy = f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}"
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    try:
        with running_worker([AMQP_ONLY_NOTES], f"{via_proxy};{broker_url}", store, heartbeat_s=2) as worker:
            assert worker.node == via_proxy
            publish(pms, key, ["before"])
            wait_for(lambda: delivered(inbox, key) == {"before": 1}, what="delivered through the proxy")
            proxy.freeze()
            frozen_at = time.monotonic()
            wait_for(lambda: worker.node == broker_url and worker.fast_path, timeout=15, interval=0.02,
                     what="the worker on the next node")
            noticed_after = time.monotonic() - frozen_at
            assert isinstance(worker._consumer_conn.connection.transport, BufferedTCPTransport)
            publish(pms, key, ["after"])
            wait_for(lambda: delivered(inbox, key) == {"before": 1, "after": 1}, what="delivered after the move")
    finally:
        proxy.close()
    print(f"silent broker noticed and next node taken after {noticed_after:.2f} s (heartbeat 2 s)")
    # py-amqp gives up after two intervals without a frame (4 s); the loop checks 4 times an interval.
    assert 3.5 <= noticed_after <= 6.5, noticed_after


def test_deliveries_on_the_fast_path_count_as_traffic_for_heartbeats(broker_url, vhost, store, pms):
    """A broker that keeps delivering sends no heartbeats: the frames the fast path takes out of
    the buffer must count as received (``bytes_recv``), or py-amqp would drop a busy connection
    after two intervals."""
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    texts = [f"n{i}" for i in range(300)]
    with running_worker([AMQP_ONLY_NOTES], broker_url, store, heartbeat_s=1, batch_size=5) as worker:
        wait_for(lambda: worker.fast_path, what="consuming")
        publisher = worker._publisher
        started = time.monotonic()
        for text in texts:  # about 100 a second: a broker busy delivering sends no heartbeat
            publish(pms, key, [text])
            time.sleep(0.01)
        wait_for(lambda: worker.counts.get("delivered") == len(texts), timeout=60, what="all delivered")
        streamed_s = time.monotonic() - started
        assert worker._publisher is publisher  # no reconnect
    assert streamed_s > 2.5, streamed_s  # longer than two intervals, or this proves nothing
    assert set(delivered(inbox, key)) == set(texts)


@pytest.mark.slow
def test_a_batch_longer_than_two_heartbeats_keeps_its_connections(broker_url, vhost, store, pms):
    """While the loop is busy (a slow mapping or peer), heartbeats still go out: the broker keeps
    the connections, the batch is acked on them, and nothing is redelivered."""
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    with running_worker([AMQP_ONLY_NOTES], broker_url, store, heartbeat_s=2) as worker:
        wait_for(lambda: worker.fast_path, what="consuming")
        publisher, before = worker._publisher, gridbus_connections(rabbitmqctl, vhost, os.getpid())
        publish(pms, key, ["slow 7", "after"])
        wait_for(lambda: worker.counts.get("delivered") == 2, timeout=30, what="both delivered")
        assert worker._publisher is publisher  # no reconnect
        assert sorted(c["pid"] for c in gridbus_connections(rabbitmqctl, vhost, os.getpid())) == sorted(
            c["pid"] for c in before)
    assert delivered(inbox, key) == {"slow 7": 1, "after": 1}
    assert worker.counts == {"delivered": 2}  # acked at once: no redelivery, no duplicate


@pytest.mark.slow
def test_the_reconnect_back_off_starts_again_after_a_connection_served(broker_url, vhost, tmp_path, pms):
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    worker = WorkerProcess(broker_url, f"sqlite:///{tmp_path}/store.sqlite3", ROUTES_MODULE, tmp_path)
    worker.start()
    try:
        wait_for(lambda: log_events(worker, "worker.started"), what="worker started")
        sent: list[str] = []
        closed_at = []
        for round_ in range(5):
            texts = [f"r{round_}-{i}" for i in range(20)]
            publish(pms, key, texts)
            sent += texts
            wait_for(lambda: set(delivered(inbox, key)) == set(sent), timeout=30, what=f"round {round_} delivered")
            ours = wait_for(lambda: gridbus_connections(rabbitmqctl, vhost, worker.proc.pid), what="connections")
            closed_at.append(time.time())
            for connection in ours:
                rabbitmqctl("close_connection", connection["pid"], "test: forced close")
            wait_for(lambda: len(log_events(worker, "worker.started")) == round_ + 2, timeout=15,
                     what=f"reconnected after close {round_ + 1}")
        lost = log_events(worker, "broker.connection_lost")
        started = log_events(worker, "worker.started")
        # A connection that settled messages was lost: every wait is the first one, never 1, 2, 4 s...
        assert len(lost) == 5 and all(e["retry_in_s"] <= RECONNECT_FIRST_S for e in lost), lost
        outages = [at(s) - c for s, c in zip(started[1:], closed_at)]
        print("retry_in_s", [e["retry_in_s"] for e in lost], "outages_s", [round(o, 2) for o in outages])
        # Each outage includes rabbitmqctl's own start-up (slow on a busy machine); without the reset
        # the fifth would wait 8 s, the back-off alone.
        assert max(outages) < 5, outages
        # ...while one that served nothing is followed by a longer wait.
        ours = gridbus_connections(rabbitmqctl, vhost, worker.proc.pid)
        for connection in ours:
            rabbitmqctl("close_connection", connection["pid"], "test: forced close")
        wait_for(lambda: len(log_events(worker, "worker.started")) == 7, timeout=15, what="reconnected once more")
        assert log_events(worker, "broker.connection_lost")[-1]["retry_in_s"] >= RECONNECT_FIRST_S
        assert worker.terminate() == 0
    finally:
        worker.close()
    got = delivered(inbox, key)
    assert set(got) == set(sent)  # nothing lost; a repeat (same outbound id) only from a batch in hand


@pytest.fixture
def secret_user(vhost):
    """A user of this test's own, with a password that appears nowhere else."""
    user, password = f"{VHOST_PREFIX}-masked", secrets.token_hex(12)
    existing = rabbitmqctl("list_users", "--quiet", "--no-table-headers").split()
    if user in existing:
        rabbitmqctl("delete_user", user)
    rabbitmqctl("add_user", user, password)
    rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    yield user, password
    rabbitmqctl("delete_user", user)


def test_no_password_of_any_node_reaches_the_logs(broker_url, vhost, tmp_path, secret_user):
    user, password = secret_user
    dead_a, dead_b = secrets.token_hex(12), secrets.token_hex(12)
    nodes = f"amqp://{user}:{dead_a}@127.0.0.1:1/{vhost};amqp://{user}:{dead_b}@127.0.0.1:2/{vhost}"
    down = WorkerProcess(nodes, f"sqlite:///{tmp_path}/down.sqlite3", ROUTES_MODULE, tmp_path / "down")
    (tmp_path / "down").mkdir()
    live = f"{BROKER_HOST}:{port_of(broker_url)}"
    up = WorkerProcess(f"{nodes};amqp://{user}:{password}@{live}/{vhost}",
                       f"sqlite:///{tmp_path}/up.sqlite3", ROUTES_MODULE, tmp_path / "up")
    (tmp_path / "up").mkdir()
    try:
        down.start()
        up.start()
        wait_for(lambda: len(log_events(down, "broker.connection_lost")) >= 2, what="two rounds of refused nodes")
        wait_for(lambda: log_events(up, "worker.started"), what="worker started on the third node")
        assert up.terminate() == 0
        down.terminate()
    finally:
        down.close()
        up.close()
    text = down.logs() + up.logs()
    for secret in (password, dead_a, dead_b):
        assert secret not in text
    [started] = log_events(up, "worker.started")
    assert started["broker"] == (f"amqp://{user}:***@127.0.0.1:1/{vhost};amqp://{user}:***@127.0.0.1:2/{vhost};"
                                 f"amqp://{user}:***@{live}/{vhost}")
    assert started["node"] == f"amqp://{user}:***@{live}/{vhost}"
    lost = log_events(down, "broker.connection_lost")[0]
    assert f"amqp://{user}:***@127.0.0.1:1/{vhost}: " in lost["error"]
    assert f"amqp://{user}:***@127.0.0.1:2/{vhost}: " in lost["error"]
