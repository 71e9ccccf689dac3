"""Shared fixtures. Broker tests run against the real RabbitMQ, in vhosts of the session's
prefix (made with rabbitmqctl and kept), so they never see each other's queues, and publish as
users of their own; the users named by the system codes are watched, never changed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile

import pytest
from kombu import Connection

BROKER_HOST = os.environ.get("GRIDBUS_TEST_BROKER_HOST", "127.0.0.1")
PG_URL = os.environ.get("GRIDBUS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def rabbitmqctl(*args: str, timeout: float = 60, stdin: str | None = None) -> str:
    """Run rabbitmqctl without pipes (its helper processes can outlive it and hold a pipe open),
    in a process group of its own that is killed whole on timeout. ``stdin``: a password, say,
    kept off the command line."""
    exe = shutil.which("rabbitmqctl")
    if exe is None:
        pytest.fail("rabbitmqctl is not on PATH: the broker tests need the local RabbitMQ")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as given:
        given.write(b"" if stdin is None else stdin.encode() + b"\n")
        given.seek(0)
        proc = subprocess.Popen([exe, *args], stdout=out, stderr=subprocess.STDOUT, stdin=given,
                                start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"rabbitmqctl {' '.join(args)} did not answer within {timeout:g} s")
        out.seek(0)
        text = out.read().decode(errors="replace")
    if code != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed: {text.strip()}")
    return text


def pytest_collection_modifyitems(config, items):
    """Tests that restart the broker run last, when nothing else needs it."""
    items.sort(key=lambda item: item.get_closest_marker("broker_restart") is not None)


#: Test vhosts are made once per machine and kept: creating and deleting vhosts while other
#: clients are busy can wedge RabbitMQ 3.10's vhost supervisor. Each use starts from an empty
#: vhost instead: every queue left in it is deleted first.
#: GRIDBUS_TEST_VHOST_PREFIX lets two checkouts run their suites on one broker at once.
VHOST_PREFIX = os.environ.get("GRIDBUS_TEST_VHOST_PREFIX", "gridbus-test")
SESSION_VHOST = VHOST_PREFIX
FRESH_VHOST = f"{VHOST_PREFIX}-fresh"  # see also TEST_VHOSTS below


def broker_definitions() -> dict:
    """The node's definitions (vhosts, users, permissions, queues of every vhost) in one
    rabbitmqctl call: each call costs an Erlang VM start-up, about half a second to a second."""
    return json.loads(rabbitmqctl("export_definitions", "-", "--quiet"))


def ensure_empty_vhost(name: str) -> str:
    definitions = broker_definitions()
    if name not in {v["name"] for v in definitions["vhosts"]}:
        rabbitmqctl("add_vhost", name)
    if not any(
        p["vhost"] == name and p["user"] == "guest" and (p["configure"], p["write"], p["read"]) == (".*", ".*", ".*")
        for p in definitions["permissions"]
    ):
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    delete_all_queues(name, definitions)
    return name


def delete_all_queues(vhost: str, definitions: dict | None = None) -> None:
    """Delete every queue in ``vhost``. The definitions hold every queue but the exclusive ones,
    which go with the connection that declared them."""
    definitions = broker_definitions() if definitions is None else definitions
    queues = [q["name"] for q in definitions["queues"] if q["vhost"] == vhost]
    if queues:
        with Connection(f"amqp://guest:guest@{BROKER_HOST}:5672/{vhost}", connect_timeout=10) as conn:
            channel = conn.channel()
            for queue in queues:
                channel.queue_delete(queue)


SIM_VHOST = f"{VHOST_PREFIX}-sim"
TEST_VHOSTS = (SESSION_VHOST, FRESH_VHOST, SIM_VHOST)


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test():
    """A worker process left running by a failed test would consume the next test's messages."""
    yield
    from tests.support.processes import kill_leftovers

    kill_leftovers()


@pytest.fixture(scope="module", autouse=True)
def _drop_the_modules_queues(request):
    """Delete every queue a test module left behind, once the module is done.

    Each quorum queue holds about three of RabbitMQ's file handles, and the broker's handle
    budget (about 900 under the default limit of 1024 descriptors) is shared with sockets: a
    suite that kept every queue would leave RabbitMQ unable to accept connections.
    """
    yield
    if request.node.get_closest_marker("broker") is None and "integration" not in str(request.node.fspath):
        return
    definitions = broker_definitions()  # one rabbitmqctl call for every test vhost
    listed = {v["name"] for v in definitions["vhosts"]}
    for vhost in TEST_VHOSTS:
        if vhost in listed:
            delete_all_queues(vhost, definitions)


@pytest.fixture(scope="session")
def vhost(broker_wide_users):
    """The session's vhost, emptied at the start, guest allowed everywhere in it."""
    return ensure_empty_vhost(SESSION_VHOST)


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
def fresh_vhost(broker_wide_users):
    """An empty vhost for one test, for tests that must start from an empty broker."""
    return ensure_empty_vhost(FRESH_VHOST)


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


SYSTEMS = ("tc", "mkt", "pms", "mdc", "cmd")
#: The RabbitMQ user of each upstream system in the tests: the suite's own (``<prefix>-<system>``,
#: e.g. ``gridbus-test-pms``), never the broker-wide users named by the system codes. The tests'
#: workers accept these as the systems' users (``source_users`` / ``GRIDBUS_SOURCE_USERS``).
TEST_SOURCE_USERS = {system: f"{VHOST_PREFIX}-{system}" for system in SYSTEMS}


def _password_hash(password: str) -> str:
    """RabbitMQ's salted SHA-256 hash (``rabbit_password_hashing_sha256``), as ``add_user`` keeps it."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def import_definitions(users: dict[str, str] | None = None, permissions: list[dict] | None = None) -> None:
    """Create users (name -> password; an existing one is given that password) and set
    permissions, all in one rabbitmqctl call; the definitions go on standard input, the passwords
    only as salted hashes."""
    definitions = {
        "users": [
            {"name": name, "password_hash": _password_hash(password),
             "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}
            for name, password in (users or {}).items()
        ],
        "permissions": permissions or [],
    }
    rabbitmqctl("import_definitions", "--quiet", stdin=json.dumps(definitions))


def system_permissions(vhost: str, systems) -> list[dict]:
    """The suite's own user of each system may publish to its system's exchange in ``vhost``, and
    nothing else (the permissions ``users.ensure_system_users`` sets)."""
    from gridbus.tools import users

    return [
        {"user": TEST_SOURCE_USERS[system], "vhost": vhost, "configure": users.CONFIGURE_PERMISSION,
         "write": users.write_permission(system), "read": users.READ_PERMISSION}
        for system in systems
    ]


def password_hashes() -> dict[str, str]:
    """user -> the salted password hash RabbitMQ keeps; setting a password, even the same, changes it."""
    return {user["name"]: user.get("password_hash", "") for user in broker_definitions()["users"]}


@pytest.fixture(scope="session")
def broker_wide_users():
    """The users named by the system codes (a deployment's, perhaps), with their password
    hashes at the start of the session; the session fails if any of them changed by its end.

    Those missing are created here, with passwords of the session's own and no permissions, so
    that every run shows the suite leaves existing users alone; they are deleted at the end.
    """
    before = password_hashes()
    added = [user for user in SYSTEMS if user not in before]
    if added:
        import_definitions(users={user: secrets.token_urlsafe(18) for user in added})  # one call for them all
    recorded = {user: hashed for user, hashed in password_hashes().items() if user in SYSTEMS}
    yield recorded
    after = password_hashes()
    for user in added:
        rabbitmqctl("delete_user", user)
    changed = sorted(user for user, hashed in recorded.items() if after.get(user, hashed) != hashed)
    if changed:
        pytest.fail(
            f"the password of {', '.join(changed)} changed during the test session: the tests may set only the "
            f"passwords of their own users ({', '.join(TEST_SOURCE_USERS.values())}); or another client of the "
            "broker changed it"
        )


@pytest.fixture(scope="session")
def system_users(vhost) -> dict[str, tuple[str, str]]:
    """system -> (user, password): the suite's own user of each upstream system, created (or given
    the session's password) and allowed to publish only to its system's exchange in ``vhost``."""
    password = secrets.token_urlsafe(18)
    # What ``users.ensure_system_users`` does (tested in test_users.py), in one rabbitmqctl call
    # instead of three per user.
    import_definitions(
        users={TEST_SOURCE_USERS[system]: password for system in SYSTEMS},
        permissions=system_permissions(vhost, SYSTEMS),
    )
    return {system: (TEST_SOURCE_USERS[system], password) for system in SYSTEMS}
