"""Shared fixtures. Broker tests run against the real RabbitMQ, each test session in a vhost
of its own (created and deleted with rabbitmqctl), so they never see each other's queues."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from kombu import Connection

BROKER_HOST = os.environ.get("GRIDBUS_TEST_BROKER_HOST", "127.0.0.1")
PG_URL = os.environ.get("GRIDBUS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def rabbitmqctl(*args: str) -> str:
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl is not on PATH: the broker tests need the local RabbitMQ")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


@pytest.fixture(scope="session")
def vhost():
    """A fresh vhost for this test session, guest allowed everywhere in it."""
    name = f"gridbus-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="session")
def broker_url(vhost) -> str:
    url = f"amqp://guest:guest@{BROKER_HOST}:5672/{vhost}"
    with Connection(url, connect_timeout=5) as conn:
        try:
            conn.ensure_connection(max_retries=3)
        except Exception as exc:  # noqa: BLE001 - report any failure to reach the broker loudly
            pytest.fail(f"RabbitMQ is not reachable at {url}: {exc}")
    return url


@pytest.fixture
def fresh_vhost():
    """A vhost for one test, for tests that must start from an empty broker."""
    name = f"gridbus-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture
def fresh_broker_url(fresh_vhost) -> str:
    return f"amqp://guest:guest@{BROKER_HOST}:5672/{fresh_vhost}"


@pytest.fixture
def pg_url() -> str:
    import psycopg

    try:
        psycopg.connect(PG_URL, connect_timeout=5).close()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    return PG_URL


TEST_SYSTEM_PASSWORD = "gridbus-test"
SYSTEMS = ("tc", "mkt", "pms", "mdc", "cmd")


@pytest.fixture(scope="session")
def system_users(vhost) -> dict[str, tuple[str, str]]:
    """One RabbitMQ user per upstream system, allowed to publish only to its own exchange."""
    existing = rabbitmqctl("list_users", "--quiet")
    for system in SYSTEMS:
        if f"\n{system}\t" in "\n" + existing or existing.startswith(f"{system}\t"):
            rabbitmqctl("change_password", system, TEST_SYSTEM_PASSWORD)
        else:
            rabbitmqctl("add_user", system, TEST_SYSTEM_PASSWORD)
        rabbitmqctl("set_permissions", "-p", vhost, system, "^$", f"^{system}\\.out$", "^$")
    return {s: (s, TEST_SYSTEM_PASSWORD) for s in SYSTEMS}
