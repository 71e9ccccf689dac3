"""Failover across the nodes of a real 3-node RabbitMQ cluster, started on this machine for the
test (``tests/support/cluster.py``), apart from the shared node at 5672, which is never touched.

One worker is given all three nodes. Its node is stopped under a steady stream of messages:
it moves to the next node within seconds, still reading deliveries on the fast path, and
every message published before, during and after is delivered (counted by the output's
message id, which a repeat keeps). Then the second node goes down too: the worker reaches the
third, and once a majority of the quorum queues' replicas is back, it delivers again.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
import zlib

import amqp.exceptions
import pytest

from tests.conftest import VHOST_PREFIX
from tests.support.amqp import UpstreamSystem, body_json, declare_routes, inbox_reader, running_worker, wait_for
from tests.support.cluster import Cluster
from tests.support.connections import gridbus_connections
from tests.support.routes import AMQP_ONLY_NOTES, note_body
from gridbus.workers.amqp import BufferedTCPTransport

pytestmark = [pytest.mark.broker, pytest.mark.cluster, pytest.mark.slow]

#: Node names and ports of this test run's own, so two checkouts (GRIDBUS_TEST_VHOST_PREFIX)
#: can run it at once: nodes gbt-<prefix>-1..3@localhost at PORT_BASE+1..3.
NODE_PREFIX = "gbt-" + re.sub(r"[^A-Za-z0-9]+", "-", VHOST_PREFIX).strip("-") + "-"
PORT_BASE = int(os.environ.get("GRIDBUS_TEST_CLUSTER_PORT") or 5700 + zlib.crc32(VHOST_PREFIX.encode()) % 500 * 4)
VHOST = "gridbus-failover"


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(prefix=NODE_PREFIX, base_port=PORT_BASE)
    try:
        c.start()
        first = c.nodes[0]
        first.ctl("add_vhost", VHOST)
        first.ctl("set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*")
        first.ctl("add_user", "pms", "pms-failover")
        first.ctl("set_permissions", "-p", VHOST, "pms", "^$", "^pms\\.out$", "^$")
        yield c
    finally:
        c.stop()


class Stream:
    """Publishes notes as pms to one node, one every ``interval`` s, in a thread of its own."""

    def __init__(self, node, key: str, prefix: str, interval: float = 0.02):
        self.system = UpstreamSystem(VHOST, "pms", "pms-failover", port=node.port)
        self.key, self.prefix, self.interval = key, prefix, interval
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, n: int) -> None:
        for _ in range(n):
            text = f"{self.prefix}{len(self.sent)}"
            self.system.publish("pms.out", "note.amqp", note_body(self.key, text), message_type="Note")
            self.sent.append(text)  # confirmed by the broker: it must come out

    def start(self) -> "Stream":
        def run():
            while not self._stop.wait(self.interval):
                self.publish(1)

        self._thread = threading.Thread(target=run, name="failover-stream", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    def close(self) -> None:
        self.stop()
        self.system.close()


def outputs(inbox, key) -> dict[str, set[str]]:
    """Text of each inbound note -> the message ids of its outputs in marketing's inbox (what
    was taken so far, while the inbox's quorum queue is between leaders)."""
    try:
        inbox.drain()
    except amqp.exceptions.AMQPError:  # e.g. 541 noproc: no leader elected yet
        pass
    got: dict[str, set[str]] = {}
    for m in (m for m in inbox.messages if body_json(m)["key"] == key):
        got.setdefault(body_json(m)["text"], set()).add(m.properties["message_id"])
    return got


def test_the_worker_moves_to_a_live_node_on_the_fast_path_and_loses_nothing(cluster, store):
    n1, n2, n3 = cluster.nodes
    urls = cluster.urls(VHOST)
    declare_routes(n1.url(VHOST), [AMQP_ONLY_NOTES])
    key = uuid.uuid4().hex
    inbox = inbox_reader(n3.url(VHOST))
    stream = Stream(n3, key, "m")  # n3 stays up while the others go down
    try:
        # the cluster is the test's own: its pms user is named pms
        with running_worker([AMQP_ONLY_NOTES], urls, store, source_users={"pms": "pms"}) as worker:
            wait_for(lambda: worker.fast_path, what="consuming")
            assert worker.node == n1.url(VHOST)
            assert isinstance(worker._consumer_conn.connection.transport, BufferedTCPTransport)
            names = [c["connection_name"] for c in gridbus_connections(n3.ctl, VHOST, os.getpid())]
            assert sorted(n.rsplit(" ", 1)[1] for n in names) == ["consumer", "publisher"]

            stream.publish(100)  # before
            wait_for(lambda: len(outputs(inbox, key)) >= 50, timeout=30, what="the worker under way")
            stream.start()  # during
            time.sleep(0.5)
            stopped = time.monotonic()
            n1.ctl("stop_app")
            wait_for(lambda: worker.node == n2.url(VHOST) and worker.fast_path, timeout=30, interval=0.02,
                     what="the worker on node 2")
            moved_after = time.monotonic() - stopped
            print(f"moved to node 2 {moved_after:.2f} s after node 1 was stopped")
            assert isinstance(worker._consumer_conn.connection.transport, BufferedTCPTransport)
            time.sleep(1)
            stream.stop()
            stream.publish(100)  # after
            wait_for(lambda: set(outputs(inbox, key)) == set(stream.sent), timeout=60,
                     what="everything delivered after the first failover")

            # Node 1 is still down; node 2 goes too. The worker tries node 3 (after the node it
            # lost, node 1 being down as well), where the quorum queues wait for a majority.
            n2.ctl("stop_app")
            stopped = time.monotonic()
            wait_for(lambda: worker.node == n3.url(VHOST), timeout=30, interval=0.02, what="the worker on node 3")
            print(f"on node 3 {time.monotonic() - stopped:.2f} s after node 2 was stopped")
            n1.ctl("start_app")
            n1.await_startup()
            wait_for(lambda: worker.fast_path and worker.node == n3.url(VHOST), timeout=90, what="consuming on node 3")
            stream.publish(100)  # with a majority again
            wait_for(lambda: set(outputs(inbox, key)) == set(stream.sent), timeout=90,
                     what="everything delivered on node 3")
    finally:
        stream.close()
        for node in (n1, n2):
            node.ctl("start_app", check=False)
    got = outputs(inbox, key)
    print(f"{len(stream.sent)} published, {sum(len(ids) for ids in got.values())} outputs")
    assert set(got) == set(stream.sent) and len(stream.sent) > 300
    # Each note has one output, whatever was redelivered: a repeat carries the same message id.
    assert all(len(ids) == 1 for ids in got.values()), {t: ids for t, ids in got.items() if len(ids) > 1}
    assert moved_after < 10, moved_after
