"""System users against the real RabbitMQ: a system may publish to its own exchange only, and
the broker vouches for ``user_id``."""

from __future__ import annotations

import uuid

import pika
import pika.exceptions
import pytest
from kombu import Connection

from routes import naming
from routes.model import Route, Source, Step, Target
from workers import topology, users

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
def system_users(vhost):
    """Users pms (generated password) and mkt (given password), created once: rabbitmqctl is slow."""
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    created = users.ensure_system_users(vhost, ["pms", "mkt"], {"mkt": "mkt-secret"}, prefix=prefix)
    # Never deleted: deleting a user closes its connections, which has wedged RabbitMQ 3.10 here
    # while other clients were busy. A few leftover test users with no permissions elsewhere are harmless.
    return {u.system: u for u in created}


def _channel_as(broker_url: str, user: users.SystemUser):
    params = pika.URLParameters(broker_url)
    params.credentials = pika.PlainCredentials(user.username, user.password)
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.confirm_delivery()
    return connection, channel


def _props(user_id: str) -> pika.BasicProperties:
    return pika.BasicProperties(message_id=str(uuid.uuid4()), user_id=user_id, delivery_mode=2)


def test_generated_and_given_passwords(system_users):
    pms, mkt = system_users["pms"], system_users["mkt"]
    assert pms.generated and pms.created and len(pms.password) >= 24
    assert mkt.password == "mkt-secret" and not mkt.generated
    assert users.write_permission("pms") == r"^pms\.out$"


def test_existing_user_keeps_its_password_unless_one_is_given(vhost, system_users):
    prefix = system_users["pms"].username[: -len("pms")]
    [again] = users.ensure_system_users(vhost, ["pms"], prefix=prefix)
    assert again.password is None and not again.created and not again.generated


def test_system_publishes_to_its_own_exchange_only(broker_url, route, system_users):
    pms = system_users["pms"]
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


def test_broker_refuses_a_user_id_that_is_not_the_connections_user(broker_url, route, system_users):
    pms = system_users["pms"]
    connection, channel = _channel_as(broker_url, pms)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.basic_publish("pms.out", route.source.routing_key, b"<x/>", _props("mkt"), mandatory=True)
        assert refused.value.reply_code == 406
        assert "PRECONDITION_FAILED" in refused.value.reply_text
    finally:
        connection.close()


def test_system_user_cannot_read_or_declare(broker_url, route, system_users):
    pms = system_users["pms"]
    connection, channel = _channel_as(broker_url, pms)
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            channel.basic_get(route.work_queue)
        assert refused.value.reply_code == 403
    finally:
        connection.close()


def test_unbound_routing_key_still_reaches_the_unrouted_queue(broker_url, route, system_users):
    pms = system_users["pms"]
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
