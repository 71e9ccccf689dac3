"""The ingester against the real RabbitMQ: dead letters go into the store's archive, each once,
and are acked only after the commit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.integration.test_dlq import REPO, broker_dead_letter, dead_letter, queue_count
from gridbus.tools.archive import Ingester
from gridbus.workers.store import Store
from gridbus.workers.store.dead_letters import Selection

pytestmark = pytest.mark.broker


def ingest(broker_url, routes, store_url) -> int:
    store = Store(store_url)
    try:
        return Ingester(broker_url, routes, store, linger_s=0.05, unrouted=False).run(until_idle_s=0.5)
    finally:
        store.close()


def test_letters_wait_in_their_queue_until_the_ingester_runs(broker_url, own_routes, own_channel, tmp_path):
    routes, channel = own_routes, own_channel
    pms, mkt = routes
    body = "<黑图 id='1'>\x1b[31m</黑图>".encode("gb18030")
    ids = [dead_letter(channel, pms, body=body, content_type="application/xml; charset=gb18030") for _ in range(3)]
    dead_letter(channel, mkt, error_type="delivery-failed")
    rejected = broker_dead_letter(channel, mkt)
    assert queue_count(channel, pms.dead_letter_queue) == 3  # no ingester yet: they wait

    url = f"sqlite:///{tmp_path}/store.sqlite3"
    assert ingest(broker_url, routes, url) == 5
    assert queue_count(channel, pms.dead_letter_queue) == 0 and queue_count(channel, mkt.dead_letter_queue) == 0
    store = Store(url)
    try:
        groups = {(g.route, g.error_type, g.message_type): g.count for g in store.dead_letters.groups()}
        assert groups == {
            (pms.name, "contract-violation", "BlackMapPublished"): 3,
            (mkt.name, "delivery-failed", "SupplyPlanPushed"): 1,
            (mkt.name, "broker:rejected", "SupplyPlanPushed"): 1,
        }
        [summary] = store.dead_letters.search(Selection(message_id=ids[0]))
        letter = store.dead_letters.get(summary.seq)
        assert letter.body == body and letter.attempts == 3 and letter.reason == "contract-violation in test"
        assert letter.headers["x-gridbus-route"] == pms.name and letter.properties["correlation_id"] == f"corr-{ids[0]}"
        [broker] = store.dead_letters.search(Selection(message_id=rejected))
        assert broker.reason.startswith(f"RabbitMQ dead-lettered it from {mkt.work_queue} (rejected")
    finally:
        store.close()


_KILLED_AFTER_COMMIT = """
import os, signal, sys
from tests.integration.test_dlq import make_routes
from gridbus.tools.archive import Ingester
from gridbus.workers.store import Store

def killed(letters):
    os.kill(os.getpid(), signal.SIGKILL)  # committed, not acked

Ingester(sys.argv[1], make_routes(sys.argv[2]), Store(sys.argv[3]), after_commit=killed, unrouted=False).run()
"""


def test_killed_between_the_commit_and_the_ack_archives_each_letter_once(broker_url, own_routes, own_channel, tmp_path):
    routes, channel = own_routes, own_channel
    pms, _ = routes
    ids = {dead_letter(channel, pms) for _ in range(4)}
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    suffix = pms.name.rsplit("-", 1)[1]
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_COMMIT, broker_url, suffix, url],
        cwd=REPO, capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    store = Store(url)
    try:
        assert store.dead_letters.count() == 4  # committed before the kill
    finally:
        store.close()

    assert ingest(broker_url, routes, url) == 0  # the same four, delivered again: none new
    assert queue_count(channel, pms.dead_letter_queue) == 0
    store = Store(url)
    try:
        assert {s.message_id for s in store.dead_letters.search()} == ids and store.dead_letters.count() == 4
    finally:
        store.close()


def test_a_worker_archives_the_dead_letters_it_makes(broker_url, vhost, system_users, tmp_path):
    from tests.support.amqp import UpstreamSystem, declare_routes
    from tests.support.amqp import wait_for
    from tests.support.processes import WorkerProcess
    from tests.support.routes import AMQP_ONLY_NOTES, note_body

    declare_routes(broker_url, [AMQP_ONLY_NOTES])
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    worker = WorkerProcess(broker_url, url, "tests.support.routes:SUBPROCESS_ROUTES", tmp_path, GRIDBUS_ARCHIVE_INGEST="true")
    pms = UpstreamSystem(vhost, *system_users["pms"])
    try:
        message_id = pms.publish("pms.out", "note.amqp", note_body(uuid.uuid4().hex, version="2"), message_type="Note")
    finally:
        pms.close()
    worker.start()
    try:
        def archived_letter():
            store = Store(url)
            try:
                return store.dead_letters.search(Selection(message_id=message_id))
            finally:
                store.close()

        [letter] = wait_for(archived_letter, timeout=30, what="the dead letter archived by the worker")
        assert letter.route == AMQP_ONLY_NOTES.name and letter.error_type == "contract-violation"
        assert worker.terminate() == 0
    finally:
        worker.close()
