"""Fixtures of the integration layer."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from gridbus.workers.store import Store
from tests.support.amqp import UpstreamSystem


@pytest.fixture
def store(tmp_path):
    """A SQLite store of the test's own (the embedded default for one process)."""
    s = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    yield s
    s.close()


@pytest.fixture
def pms(vhost, system_users):
    """The pms system publishing as the suite's own pms user (a module may define its own)."""
    system = UpstreamSystem(vhost, *system_users["pms"])
    yield system
    system.close()


@pytest.fixture
def pg_schema_url(pg_url):
    """A schema of this test's own in the test database, dropped afterwards."""
    schema = f"gridbus_t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{pg_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def own_routes(broker_url):
    """Two routes of their own (unique names, ``test_dlq.make_routes``) declared in the session's
    vhost, their queues deleted afterwards."""
    from kombu import Connection

    from gridbus.workers import topology
    from tests.integration.test_dlq import make_routes

    declared = make_routes(uuid.uuid4().hex[:8])
    topo = topology.derive(declared)
    with Connection(broker_url) as conn:
        topology.declare(conn.default_channel, topo)
    yield declared
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in topo.queues:
            if any(queue.name.startswith(r.name) for r in declared):
                channel.queue_delete(queue.name)


@pytest.fixture
def own_channel(broker_url):
    """A py-amqp channel on the session's vhost, bodies kept as bytes."""
    import amqp
    from kombu import Connection

    info = Connection(broker_url).info()
    conn = amqp.Connection(host=f"{info['hostname']}:{info['port']}", userid=info["userid"],
                           password=info["password"], virtual_host=info["virtual_host"])
    conn.connect()
    channel = conn.channel()
    channel.auto_decode = False
    yield channel
    conn.close()
