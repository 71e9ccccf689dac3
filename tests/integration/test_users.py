"""System users against the real RabbitMQ: a system may publish to its own exchange only, and
the broker vouches for ``user_id``."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pika
import pika.exceptions
import pytest
from click.testing import CliRunner
from kombu import Connection

from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.soap import peer_wsdl

from gridbus.contracts import naming
from gridbus.routes.model import RetryPolicy, Route, Source, Step, Target
from gridbus.routes import ROUTES
from tests.conftest import SYSTEMS, VHOST_PREFIX, password_hashes
from tests.support.amqp import UpstreamSystem, dead_letter_reader, inbox_reader, running_worker, wait_for
from tests.support.fakes import RecordingAdapter
from tests.support.processes import WorkerProcess
from tests.support.routes import NOTES, note_body
from gridbus.workers import headers as H
from gridbus.workers import topology
from gridbus.tools import users
from gridbus.tools.cli import main as cli

pytestmark = pytest.mark.broker


class BlackMapPublished:
    message_type = "BlackMapPublished"


def _identity(message, context):
    return message


@pytest.fixture
def route(broker_url):
    suffix = uuid.uuid4().hex[:8]
    declared = Route(
        name=f"pms.users-{suffix}",
        source=Source("pms", f"users-{suffix}.published"),
        contract=BlackMapPublished,
        steps=(Step("notify", _identity, Target("mkt", "black_map_notice")),),
    )
    other = Route(
        name=f"mkt.users-{suffix}",
        source=Source("mkt", f"users-{suffix}.pushed"),
        contract=BlackMapPublished,
        steps=(Step("notify", _identity, Target("cmd", "x")),),
    )
    with Connection(broker_url) as conn:
        topology.declare(conn.default_channel, topology.derive([declared, other]))
    return declared


@pytest.fixture(scope="module")
def own_users(vhost):
    """Users of this module's own for pms (generated password) and mkt (given password), created
    once (rabbitmqctl is slow) and deleted when the module is done (their connections are closed)."""
    tag = uuid.uuid4().hex[:6]
    names = {s: f"{VHOST_PREFIX}-t{tag}-{s}" for s in ("pms", "mkt")}
    created = users.ensure_system_users(vhost, ["pms", "mkt"], {"mkt": "mkt-secret"}, usernames=names)
    yield {u.system: u for u in created}
    users.delete_users(names.values())


def _channel_as(broker_url: str, user: users.SystemUser):
    params = pika.URLParameters(broker_url)
    params.credentials = pika.PlainCredentials(user.username, user.password)
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def _props(user_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(message_id=str(uuid.uuid4()), user_id=user_id, delivery_mode=2)


def test_generated_and_given_passwords(own_users):
    pms, mkt = own_users["pms"], own_users["mkt"]
    assert pms.generated and pms.created and len(pms.password) >= 24
    assert mkt.password == "mkt-secret" and not mkt.generated
    assert users.write_permission("pms") == r"^pms\.out$"


def test_existing_user_keeps_its_password_unless_one_is_given(vhost, own_users):
    pms = own_users["pms"]
    [again] = users.ensure_system_users(vhost, ["pms"], usernames={"pms": pms.username})
    assert again.password is None and not again.created and not again.generated
    assert users.password_is_valid(pms.username, pms.password)
    assert not users.password_is_valid(pms.username, "not-its-password")


def test_system_publishes_to_its_own_exchange_only(broker_url, route, own_users):
    pms = own_users["pms"]
    connection, channel = _channel_as(broker_url, pms)
    try:
        props = _props(pms.username)
        channel.basic_publish("pms.out", route.source.routing_key, b"<x/>", props, mandatory=True)

        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.basic_publish("mkt.out", "anything", b"{}", _props(pms.username), mandatory=True)
        assert refused.value.reply_code == 403
        assert "ACCESS_REFUSED" in refused.value.reply_text
    finally:
        connection.close()

    with Connection(broker_url) as conn:
        delivered = conn.default_channel.basic_get(route.work_queue, no_ack=True)
    assert delivered.properties["message_id"] == props.message_id
    assert delivered.properties["user_id"] == pms.username


def test_broker_refuses_a_user_id_that_is_not_the_connections_user(broker_url, route, own_users):
    pms = own_users["pms"]
    connection, channel = _channel_as(broker_url, pms)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            forged = _props(own_users["mkt"].username)
            channel.basic_publish("pms.out", route.source.routing_key, b"<x/>", forged, mandatory=True)
        assert refused.value.reply_code == 406
        assert "PRECONDITION_FAILED" in refused.value.reply_text
    finally:
        connection.close()


def test_system_user_cannot_read_or_declare(broker_url, route, own_users):
    pms = own_users["pms"]
    connection, channel = _channel_as(broker_url, pms)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.basic_get(route.work_queue)
        assert refused.value.reply_code == 403
    finally:
        connection.close()


def test_unbound_routing_key_still_reaches_the_unrouted_queue(broker_url, route, own_users):
    pms = own_users["pms"]
    with Connection(broker_url) as conn:
        before = conn.default_channel.queue_declare(naming.UNROUTED_QUEUE, passive=True).message_count
    connection, channel = _channel_as(broker_url, pms)
    try:
        channel.basic_publish("pms.out", f"nobody.{uuid.uuid4().hex}", b"<x/>", _props(pms.username), mandatory=True)
    finally:
        connection.close()
    with Connection(broker_url) as conn:
        after = conn.default_channel.queue_declare(naming.UNROUTED_QUEUE, passive=True).message_count
    assert after == before + 1


def test_missing_rabbitmqctl_is_reported_clearly(vhost):
    with pytest.raises(users.UserSetupError, match="not found on PATH"):
        users.ensure_system_users(vhost, ["pms"], rabbitmqctl="no-such-rabbitmqctl")


def test_rabbitmqctl_failure_is_reported_clearly(tmp_path):
    # A stand-in rabbitmqctl that refuses, as the real one does for a missing vhost. (Asking the
    # real RabbitMQ 3.10 to set permissions in a missing vhost has left it refusing connections.)
    fake = tmp_path / "rabbitmqctl"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$1" in list_users) echo "[]";; *) echo "Error: virtual host no-such-vhost does not exist" >&2; exit 2;; esac\n'
    )
    fake.chmod(0o755)
    with pytest.raises(users.UserSetupError, match="add_user .* failed .*does not exist"):
        users.ensure_system_users("no-such-vhost", ["pms"], rabbitmqctl=str(fake))


# --- a system's user is what GRIDBUS_SOURCE_USERS says ----------------------------------------------


def test_a_route_accepts_only_the_user_mapped_to_its_system(broker_url, vhost, system_users, store):
    """The suite's pms user is accepted where it is pms's user, and refused where pms's user is
    the default (the system code), with a reason that names both."""
    pms = UpstreamSystem(vhost, *system_users["pms"])
    rec = RecordingAdapter()
    try:
        with running_worker([NOTES], broker_url, store, {"rec": rec}) as worker:  # the suite's mapping
            accepted = pms.publish("pms.out", "note.published", note_body("k", "mapped"), message_type="Note")
            wait_for(lambda: worker.counts.get("delivered") == 1, what="the mapped user's message delivered")
        with running_worker([NOTES], broker_url, store, {"rec": rec}, source_users={}) as worker:
            refused = pms.publish("pms.out", "note.published", note_body("k", "default"), message_type="Note")
            wait_for(lambda: worker.counts.get("dead-lettered") == 1, what="the other user's message refused")
    finally:
        pms.close()
    assert [(mid, out.text) for _, mid, out in rec.calls] == [(rec.calls[0][1], "mapped")]
    assert accepted != refused
    [letter] = dead_letter_reader(broker_url, NOTES).where(lambda m: m.properties.get("message_id") == refused)
    assert letter.headers[H.ERROR_TYPE] == "unauthorised"
    assert letter.headers[H.ERROR_MESSAGE] == (
        f"published by {system_users['pms'][0]!r}, but route {NOTES.name} accepts only system 'pms' as user 'pms'"
    )


# --- the README's "Running it for real", on a broker where the users exist --------------------------


#: The shipped routes of each source system, with one delay tier each: the sequence as the README
#: has it, on a fifth of the queues (the broker's file handles are shared by every test run).
README_ROUTES = tuple(
    replace(route, retry=RetryPolicy(attempts=2, first_delay_s=1.0, max_delay_s=1.0))
    for route in ROUTES
    if route.name in {
        "mkt.supply-plan-pushed", "pms.black-map-published", "cmd.plan-changed",
        "tc.sales-company-archive-pushed", "tc.user-unit-review-passed",
    }
)
README_ROUTES_MODULE = f"{__name__}:README_ROUTES"


@pytest.mark.slow
def test_the_readme_sequence_works_again_where_the_users_exist(fresh_broker_url, tmp_path):
    """declare, users --save, worker, simulate, trace: on new users, again on the same users and
    credentials file, and with a new file (the passwords unknown until --reset-passwords)."""
    tag = uuid.uuid4().hex[:6]
    names = {s: f"{VHOST_PREFIX}-readme-{tag}-{s}" for s in ("mkt", "pms", "cmd", "tc")}
    store_url = f"sqlite:///{tmp_path}/store.sqlite3"
    with SoapStub(peer_wsdl("cmd"), path="/cmd") as cmd, SoapStub(
        peer_wsdl("tc"), path="/tc"
    ) as tc:
        env = {
            "GRIDBUS_BROKER_URL": fresh_broker_url,
            "GRIDBUS_STORE_URL": store_url,
            "GRIDBUS_SOURCE_USERS": json.dumps(names),
            "GRIDBUS_SOAP_PEERS": f"cmd={cmd.url},tc={tc.url}",
        }
        gridbus = _commands(env)
        inbox = inbox_reader(fresh_broker_url)
        worker = WorkerProcess(fresh_broker_url, store_url, README_ROUTES_MODULE, tmp_path, **env)
        try:
            assert "declared" in gridbus("topology", "declare")
            first = gridbus("topology", "users", "--save", str(tmp_path / "creds.json"))
            assert first.count("created") == 4 and "credentials written" in first
            worker.start()
            _simulate_and_see_it_handled(gridbus, inbox, tmp_path / "creds.json", worker, rounds=1)
            assert "RU2026110001" in _eventually(lambda: gridbus("trace", "RU2026110001", "--store", store_url))

            again = gridbus("topology", "users", "--save", str(tmp_path / "creds.json"))
            assert again.count("updated") == 4 and "(unchanged)" in again and "kept from the file" in again
            _simulate_and_see_it_handled(gridbus, inbox, tmp_path / "creds.json", worker, rounds=2)

            elsewhere = tmp_path / "elsewhere.json"
            unknown = gridbus("topology", "users", "--save", str(elsewhere), exit_code=1)
            assert f"not saved: cmd ({names['cmd']})" in unknown and "--reset-passwords" in unknown
            assert json.loads(elsewhere.read_text()) == {}
            gridbus("simulate", "--credentials-file", str(elsewhere), exit_code=2)  # says which passwords are missing
            reset = gridbus("topology", "users", "--save", str(elsewhere), "--reset-passwords")
            assert sorted(json.loads(elsewhere.read_text())) == ["cmd", "mkt", "pms", "tc"], reset
            _simulate_and_see_it_handled(gridbus, inbox, elsewhere, worker, rounds=3)
            assert not users.password_is_valid(*json.loads((tmp_path / "creds.json").read_text())["pms"])
            assert worker.alive()
        finally:
            worker.close()
            users.delete_users(names.values())
    assert len(README_ROUTES) == 5
    refused = [
        m for r in README_ROUTES for m in dead_letter_reader(fresh_broker_url, r).drain()
        if m.headers.get(H.ERROR_TYPE) == "unauthorised"
    ]
    assert refused == []


def _commands(env: dict):
    runner = CliRunner()

    def gridbus(*args: str, exit_code: int = 0) -> str:
        routes = ["--routes-module", README_ROUTES_MODULE] if args[0] in ("topology", "simulate") else []
        result = runner.invoke(cli, [*args, *routes], env=env)
        assert result.exit_code == exit_code, (args, result.output, result.exception)
        return result.output

    return gridbus


def _eventually(attempt, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _simulate_and_see_it_handled(gridbus, inbox, credentials: Path, worker, rounds: int) -> None:
    """simulate publishes every example as the mapped users, and the worker takes them: after
    ``rounds`` runs it has decided the black map and the supply plan that many times. The first
    black map reached marketing; the same one again (same ``graph_version``) is superseded and not
    sent again. (The supply plan's outcome depends on whether the example plan change, published
    at the same moment, was decided first; only that it was decided matters here.) A refused login
    or user id would be an ``unauthorised`` dead letter instead, which the test checks last."""
    out = gridbus("simulate", "--credentials-file", str(credentials))
    assert "message(s) published and confirmed" in out
    black_map = "pms.black-map-published"
    wait_for(lambda: _outcomes(worker, black_map) == ["delivered"] + ["superseded"] * (rounds - 1),
             timeout=30, what=f"{black_map} decided {rounds} time(s), delivered once")
    wait_for(lambda: len(_outcomes(worker, "mkt.supply-plan-pushed")) == rounds, timeout=30,
             what=f"the supply plan decided {rounds} time(s)")
    assert len(inbox.where(lambda m: m.properties.get("type") == "BlackMapNotice")) == 1


def _outcomes(worker: WorkerProcess, route: str) -> list[str]:
    """The outcomes the worker logged for ``route``'s messages, in order (one JSON line each)."""
    found = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("route") == route and "outcome" in entry:
            found.append(entry["outcome"])
    return found


def test_the_broker_wide_users_keep_their_passwords(system_users, broker_wide_users):
    """The users named by the system codes exist (the session made those that were missing) and
    their password hashes are as the session found them, after the suite's own users were set up."""
    assert set(broker_wide_users) == set(SYSTEMS)
    now = password_hashes()
    assert {user: now.get(user) for user in broker_wide_users} == broker_wide_users
