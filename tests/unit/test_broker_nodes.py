"""The broker setting as a list of nodes: parsed, tried in turn without hidden sleeps, and never
logged with a password. Refused connections here are real (loopback ports nobody listens on)."""

from __future__ import annotations

import io
import json
import socket
import struct
import time

import pytest
import structlog

from gridbus.workers import logging as gridbus_logging
from gridbus.workers.amqp import BrokerNodes, BufferedTCPTransport, KeepAlive, NoNodeAnswered, broker_nodes, mask_url


def free_port() -> int:
    """A loopback port with nobody listening (taken from the kernel, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_url_or_several_separated_by_semicolons():
    assert broker_nodes("amqp://u:p@h1:5672/v") == ["amqp://u:p@h1:5672/v"]
    assert broker_nodes(" amqp://h1//; amqp://h2// ;amqp://h3//;") == ["amqp://h1//", "amqp://h2//", "amqp://h3//"]
    with pytest.raises(ValueError):
        broker_nodes(" ; ")


def test_every_password_is_masked():
    nodes = "amqp://u1:first@h1:5672/v;amqp://u2:sec@nd@h2:5673/v;amqps://u3:third@h3//"
    assert mask_url(nodes) == "amqp://u1:***@h1:5672/v;amqp://u2:***@h2:5673/v;amqps://u3:***@h3//"
    assert mask_url("refused: amqp://u:pw@h:1/v, then amqp://u:pw2@h:2/v") == (
        "refused: amqp://u:***@h:1/v, then amqp://u:***@h:2/v"
    )
    assert mask_url("memory://") == "memory://"
    assert mask_url("amqp://guest@h//") == "amqp://guest@h//"


def test_the_logs_mask_passwords_in_values_and_tracebacks():
    out = io.StringIO()
    gridbus_logging.configure("json", "INFO", stream=out)
    try:
        log = gridbus_logging.get_logger("test")
        try:
            raise ConnectionError("cannot reach amqp://gridbus:s3cr3t-a@h1:5672/v")
        except ConnectionError:
            log.warning("broker.connection_lost", broker="amqp://gridbus:s3cr3t-b@h1/v;amqp://gridbus:s3cr3t-c@h2/v",
                        exc_info=True)
    finally:
        structlog.reset_defaults()
    line = out.getvalue()
    assert "s3cr3t" not in line
    entry = json.loads(line)
    assert entry["broker"] == "amqp://gridbus:***@h1/v;amqp://gridbus:***@h2/v"
    assert "amqp://gridbus:***@h1:5672/v" in entry["exception"]


def test_every_node_is_tried_in_turn_without_waiting_between_them():
    ports = [free_port() for _ in range(3)]
    nodes = BrokerNodes(";".join(f"amqp://u:pw{i}@127.0.0.1:{p}//" for i, p in enumerate(ports)), connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(NoNodeAnswered) as refused:
        nodes.connect("test")
    assert time.monotonic() - started < 1.0  # no kombu sleep (2 s) after a refused node
    tried = [f"127.0.0.1:{p}" for p in ports]
    message = str(refused.value)
    assert [message.index(t) for t in tried] == sorted(message.index(t) for t in tried)
    assert "pw0" not in message and "u:***@" in message

    nodes.current = 1  # the node whose connection was lost was the first: start after it
    with pytest.raises(NoNodeAnswered) as refused:
        nodes.connect("test")
    message = str(refused.value)
    positions = [message.index(t) for t in tried]
    assert positions[1] < positions[2] < positions[0]


def test_a_lost_node_is_followed_by_the_next_one_round_robin():
    nodes = BrokerNodes("amqp://h1//;amqp://h2//;amqp://h3//")
    seen = []
    for _ in range(4):
        seen.append(nodes.url)
        nodes.failed()
    assert seen == ["amqp://h1//", "amqp://h2//", "amqp://h3//", "amqp://h1//"]


class _Connection:
    """What KeepAlive reads of a kombu connection: its transport's driver type and the py-amqp
    connection, with the negotiated heartbeat and the socket transport."""

    def __init__(self, transport, heartbeat: float):
        self.transport = type("KombuTransport", (), {"driver_type": "amqp"})()
        self.connection = type("PyAmqpConnection", (), {"heartbeat": heartbeat, "transport": transport})()


def test_keep_alive_writes_heartbeat_frames_while_the_owner_writes_nothing():
    ours, theirs = socket.socketpair()
    transport = BufferedTCPTransport("127.0.0.1:1")
    transport.sock = ours
    transport._setup_transport()
    keep_alive = KeepAlive([_Connection(transport, heartbeat=0.4)])
    try:
        theirs.settimeout(2)
        heartbeat = struct.pack(">BHIB", 8, 0, 0, 0xCE)  # py-amqp's heartbeat frame
        assert theirs.recv(8) == heartbeat
        assert theirs.recv(8) == heartbeat  # and again, half an interval later
    finally:
        keep_alive.stop()
        ours.close()
        theirs.close()


def test_keep_alive_leaves_connections_without_heartbeats_alone():
    ours, theirs = socket.socketpair()
    transport = BufferedTCPTransport("127.0.0.1:1")
    transport.sock = ours
    transport._setup_transport()
    keep_alive = KeepAlive([_Connection(transport, heartbeat=0)])
    try:
        assert keep_alive._thread is None
    finally:
        keep_alive.stop()
        ours.close()
        theirs.close()
