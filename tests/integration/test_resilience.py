"""Crashes, kills, hangs, broker restarts: nothing lost, nothing applied twice.

The worker runs as a real process here. Effects are the messages in marketing's inbox, told
apart by their outbound message id, which is stable across redeliveries: that is how a
receiver recognises a repeat (the window between a confirmed publish and the store commit
cannot be closed on the sender's side alone).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from tests.conftest import rabbitmqctl
from tests.support.amqp import UpstreamSystem, body_json, dead_letter_reader, declare_routes, inbox_reader, queue_depth, wait_for
from tests.support.processes import WorkerProcess
from tests.support.routes import AMQP_ONLY_NOTES, note_body
from gridbus.workers import headers as H

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROUTES_MODULE = "tests.support.routes:SUBPROCESS_ROUTES"


@pytest.fixture
def pms(broker_url, vhost, system_users):
    declare_routes(broker_url, [AMQP_ONLY_NOTES])
    system = UpstreamSystem(vhost, *system_users["pms"])
    yield system
    system.close()


@pytest.fixture
def worker(broker_url, tmp_path):
    process = WorkerProcess(broker_url, f"sqlite:///{tmp_path}/store.sqlite3", ROUTES_MODULE, tmp_path)
    yield process
    process.close()


def publish(pms, key, texts):
    return [pms.publish("pms.out", "note.amqp", note_body(key, t), message_type="Note") for t in texts]


def effects(inbox, key) -> Counter:
    return Counter(m.properties["message_id"] for m in inbox.where(lambda m: body_json(m)["key"] == key))


def keep_running(worker, until, timeout=90):
    """Supervise like systemd's Restart=always: restart the worker whenever it dies, until done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return
        if not worker.alive():
            worker.reap()
            worker.start()
        time.sleep(0.1)
    raise AssertionError(f"not done within {timeout} s; worker exits: {worker.exit_codes}\n{worker.logs()[-4000:]}")


def test_a_message_that_kills_the_worker_is_dead_lettered_as_poison(broker_url, worker, pms):
    key = uuid.uuid4().hex
    inbox, dlq = inbox_reader(broker_url), dead_letter_reader(broker_url, AMQP_ONLY_NOTES)
    texts = [f"n{i}" for i in range(20)]
    texts[7] = "crash"
    ids = publish(pms, key, texts)
    poisoned = lambda: [m for m in dlq.drain() if m.properties.get("message_id") == ids[7]]  # noqa: E731
    worker.start()
    keep_running(worker, lambda: poisoned() and len(effects(inbox, key)) == 19)
    [dead] = poisoned()
    assert dead.headers[H.ERROR_TYPE] == "poison"
    assert "crashes or hangs the worker" in dead.headers[H.ERROR_MESSAGE]
    assert dead.body == note_body(key, "crash")
    assert worker.exit_codes.count(3) == AMQP_ONLY_NOTES.max_crashes  # it crashed exactly that often
    assert len(effects(inbox, key)) == 19


def test_a_message_that_hangs_the_worker_is_dead_lettered_as_poison(broker_url, tmp_path, pms):
    key = uuid.uuid4().hex
    hung = WorkerProcess(
        broker_url, f"sqlite:///{tmp_path}/store.sqlite3", ROUTES_MODULE, tmp_path, gridbus_message_deadline_s=2
    )
    inbox, dlq = inbox_reader(broker_url), dead_letter_reader(broker_url, AMQP_ONLY_NOTES)
    ids = publish(pms, key, ["before", "hang", "after"])
    poisoned = lambda: [m for m in dlq.drain() if m.properties.get("message_id") == ids[1]]  # noqa: E731
    try:
        hung.start()
        keep_running(hung, lambda: poisoned() and len(effects(inbox, key)) == 2)
    finally:
        hung.close()
    assert poisoned()[0].headers[H.ERROR_TYPE] == "poison"
    assert 75 in hung.exit_codes  # the watchdog ended the hung process
    assert '"worker.hung"' in hung.logs()


def test_sigkill_mid_stream_then_restart_delivers_everything_once(broker_url, worker, pms):
    key = uuid.uuid4().hex
    inbox, dlq = inbox_reader(broker_url), dead_letter_reader(broker_url, AMQP_ONLY_NOTES)
    publish(pms, key, [f"n{i}" for i in range(2000)])
    worker.start()
    wait_for(lambda: queue_depth(broker_url, AMQP_ONLY_NOTES.work_queue) < 1500, timeout=60, interval=0.02,
             what="the worker well into the stream")
    worker.kill()
    delivered_before_restart = len(effects(inbox, key))
    assert delivered_before_restart < 2000, "the kill came too late to prove anything"
    worker.start()
    wait_for(lambda: len(effects(inbox, key)) == 2000, timeout=90, what="all 2000 delivered")
    worker.terminate()
    got = effects(inbox, key)
    texts = sorted(body_json(m)["text"] for m in inbox.where(lambda m: body_json(m)["key"] == key))
    assert set(texts) == {f"n{i}" for i in range(2000)}
    repeats = sum(c - 1 for c in got.values())
    # Repeats can only come from the one batch in hand at the kill, and carry the same id.
    assert repeats <= 200, repeats
    assert [m for m in dlq.drain() if body_json(m).get("key") == key] == []


def test_sigterm_finishes_the_batch_in_hand_and_loses_nothing(broker_url, worker, pms):
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    publish(pms, key, [f"n{i}" for i in range(1000)])
    worker.start()
    wait_for(lambda: queue_depth(broker_url, AMQP_ONLY_NOTES.work_queue) < 700, timeout=60, interval=0.02,
             what="the worker well into the stream")
    assert worker.terminate(timeout=30) == 0
    worker.start()
    wait_for(lambda: len(effects(inbox, key)) == 1000, timeout=60, what="all delivered after restart")
    worker.terminate()
    assert sum(effects(inbox, key).values()) == 1000  # a clean stop repeats nothing


@pytest.mark.broker_restart
def test_dropped_connections_and_a_broker_restart_mid_stream(broker_url, vhost, tmp_path, pms):
    key = uuid.uuid4().hex
    inbox = inbox_reader(broker_url)
    publish(pms, key, [f"a{i}" for i in range(3000)])
    # Small batches keep the worker mid-stream while rabbitmqctl does its work.
    worker = WorkerProcess(broker_url, f"sqlite:///{tmp_path}/store.sqlite3", ROUTES_MODULE, tmp_path,
                           gridbus_batch_size=2, gridbus_prefetch=4)
    worker.start()
    wait_for(lambda: queue_depth(broker_url, AMQP_ONLY_NOTES.work_queue) < 2900, timeout=60, interval=0.02,
             what="the worker well into the stream")
    rabbitmqctl("close_all_connections", "-p", vhost, "test: dropped connection")
    depth = queue_depth(broker_url, AMQP_ONLY_NOTES.work_queue)
    wait_for(lambda: queue_depth(broker_url, AMQP_ONLY_NOTES.work_queue) < depth - 100, timeout=60,
             what="progress after the drop")
    rabbitmqctl("stop_app", timeout=120)
    time.sleep(1)
    rabbitmqctl("start_app", timeout=120)
    rabbitmqctl("await_startup", timeout=120)
    try:
        assert queue_depth(broker_url, AMQP_ONLY_NOTES.work_queue) > 0, "the restart came too late to prove anything"
        wait_for(lambda: len(effects(inbox, key)) == 3000, timeout=120, what="all delivered after the restart")
        assert worker.alive(), "the worker should have reconnected by itself"
        assert worker.logs().count('"broker.connection_lost"') >= 2
        worker.terminate()
    finally:
        worker.close()
