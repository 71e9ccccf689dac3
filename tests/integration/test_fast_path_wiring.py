"""The fast path is wired, or visibly off: deliveries reach ``deliveries_frame_handler``, publishes
go through ``PublishFrames``, and ``GRIDBUS_AMQP_FAST_PATH=false`` (``amqp_fast_path=False``) runs
on kombu's py-amqp transport as it ships, losing nothing. If a py-amqp release renamed one of the
seams the fast path plugs into, these fail instead of the worker silently taking the slow path."""

from __future__ import annotations

from urllib.parse import urlsplit

import amqp.transport
import pytest

from tests.conftest import BROKER_HOST
from tests.support.amqp import UpstreamSystem, body_json, declare_routes, inbox_reader, running_worker, wait_for
from tests.support.routes import AMQP_ONLY_NOTES, note_body
from gridbus.workers.amqp import BufferedTCPTransport, fast_path_refusal

pytestmark = [pytest.mark.broker]

COUNT = 200


@pytest.fixture
def pms(broker_url, vhost, system_users):
    declare_routes(broker_url, [AMQP_ONLY_NOTES])
    system = UpstreamSystem(vhost, *system_users["pms"], host=BROKER_HOST, port=urlsplit(broker_url).port or 5672)
    yield system
    system.close()


def _run(broker_url, store, pms, fast: bool, key: str):
    inbox = inbox_reader(broker_url)
    with running_worker([AMQP_ONLY_NOTES], broker_url, store, amqp_fast_path=fast) as worker:
        wait_for(lambda: worker._consumer_raw is not None, what="consuming")
        for i in range(COUNT):
            pms.publish("pms.out", "note.amqp", note_body(key, f"n{i}"), message_type="Note")
        wait_for(lambda: len(inbox.where(lambda m: body_json(m)["key"] == key)) >= COUNT, timeout=60,
                 what="every note delivered")
        consumer, publisher = worker._consumer_raw, worker.publisher()
        seen = {  # while it runs: a stopped worker has no connections
            "fast_path": worker.fast_path,
            "transport": type(consumer.transport),
            "frame_handler": consumer.on_inbound_frame.__qualname__,
            "fast_consumers": bool(getattr(consumer, "fast_consumers", None)),
            "encoded": publisher.encoded,
            "capabilities": dict(publisher.connection.connection.client_properties.get("capabilities", {})),
        }
    return seen, len(inbox.where(lambda m: body_json(m)["key"] == key))


def test_on_deliveries_reach_the_fast_frame_handler_and_publishes_the_frame_encoder(broker_url, store, pms):
    assert fast_path_refusal() is None, "the installed py-amqp is not the one the fast path is tested on"
    seen, delivered = _run(broker_url, store, pms, True, "wired")
    assert delivered == COUNT
    assert seen["fast_path"] is True
    assert issubclass(seen["transport"], BufferedTCPTransport)
    # py-amqp built its inbound frame handler from ours: every frame goes through it
    assert seen["frame_handler"].startswith("deliveries_frame_handler."), seen["frame_handler"]
    assert seen["fast_consumers"], "no consumer registered with the fast frame handler"
    assert seen["encoded"] >= COUNT, "publishes took py-amqp's basic_publish instead of PublishFrames"
    assert seen["capabilities"].get("connection.blocked") is False


def test_off_runs_on_py_amqps_public_api_alone_and_loses_nothing(broker_url, store, pms):
    seen, delivered = _run(broker_url, store, pms, False, "plain")
    assert delivered == COUNT
    assert seen["fast_path"] is False
    assert seen["transport"] is amqp.transport.TCPTransport
    assert not seen["fast_consumers"]
    assert not seen["frame_handler"].startswith("deliveries_frame_handler.")
    assert seen["encoded"] == 0
    assert seen["capabilities"].get("connection.blocked", True) is True  # py-amqp's own announcement


def test_another_py_amqp_minor_version_turns_the_fast_path_off(monkeypatch, broker_url, store):
    monkeypatch.setattr(amqp, "__version__", "5.5.0")
    assert "py-amqp 5.5.0 is installed; the fast path is tested on 5.4" == fast_path_refusal()
    from gridbus.workers.runtime import Worker

    worker = Worker([AMQP_ONLY_NOTES], broker_url=broker_url, store=store, adapters=lambda p: {})
    assert worker.amqp_fast_path is False and "5.5.0" in worker.fast_path_refused
    assert worker.nodes.fast_path is False
