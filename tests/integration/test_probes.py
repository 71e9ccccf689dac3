"""/metrics, /healthz and /readyz of a worker on the real RabbitMQ: the counters after a known
run, and readiness lost when the broker becomes unreachable (a proxy of the test's own is
severed; the shared broker runs on) and regained after."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gridbus.workers.probes import ProbeServer
from gridbus.workers.store import Store
from tests.conftest import BROKER_HOST
from tests.support.amqp import declare_routes, running_worker, wait_for
from tests.support.connections import FreezableProxy
from tests.support.fakes import RecordingAdapter
from tests.support.processes import WorkerProcess
from tests.support.routes import NOTES, REVISED_NOTES, ROUTES, note_body

pytestmark = pytest.mark.broker


@contextmanager
def served(worker):
    server = ProbeServer([worker], "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(base: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    status, text = get(base + "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels) -> float | None:
    return found.get((name, frozenset(labels.items())))


def publish_note(pms, key, text="hello", **kwargs) -> str:
    return pms.publish("pms.out", "note.published", note_body(key, text), message_type="Note", **kwargs)


def test_metrics_count_a_known_run_by_route_outcome_and_error_type(broker_url, store, pms):
    key = uuid.uuid4().hex
    with running_worker(ROUTES, broker_url, store, {"rec": RecordingAdapter()}, metrics=True) as worker, \
            served(worker) as base:
        before = samples(base)
        assert value(before, "gridbus_messages_total", route=NOTES.name, outcome="dead-lettered") == 0
        assert value(before, "gridbus_messages_total", route=REVISED_NOTES.name, outcome="delivered") == 0

        repeated = publish_note(pms, key, "first")
        wait_for(lambda: worker.counts.get("delivered") == 1, what="the first note delivered")
        publish_note(pms, key, "first", message_id=repeated)  # a duplicate of a finished message
        for i in range(4):
            publish_note(pms, key, f"note {i}")
        for _ in range(2):
            pms.publish("pms.out", "note.published", b"not json", message_type="Note")
        publish_note(pms, key, "outage")  # transient every time: 3 retries, then retries-exhausted
        wait_for(lambda: sum(worker.counts.values()) == 1 + 1 + 4 + 2 + 4, timeout=30, what="every outcome")
        found = samples(base)

    def messages(outcome):
        return value(found, "gridbus_messages_total", route=NOTES.name, outcome=outcome)

    assert messages("delivered") == 5
    assert messages("duplicate") == 1
    assert messages("retry-scheduled") == 3
    assert messages("dead-lettered") == 3
    assert messages("requeued") == 0
    assert value(found, "gridbus_dead_letters_total", route=NOTES.name, error_type="contract-violation") == 2
    assert value(found, "gridbus_dead_letters_total", route=NOTES.name, error_type="retries-exhausted") == 1
    assert value(found, "gridbus_retries_scheduled_total", route=NOTES.name) == 3
    settled = 12
    assert value(found, "messaging_process_duration_seconds_count", route=NOTES.name) == settled
    assert value(found, "messaging_process_duration_seconds_bucket", route=NOTES.name, le="+Inf") == settled
    assert 0 < value(found, "messaging_process_duration_seconds_sum", route=NOTES.name) < 60
    assert value(found, "gridbus_batch_size_sum", lane="worker") == settled
    assert value(found, "gridbus_store_commit_seconds_count", lane="worker") == value(
        found, "gridbus_batch_size_count", lane="worker"
    )
    assert value(found, "gridbus_confirm_wait_seconds_count", lane="worker") >= 1
    assert value(found, "gridbus_ready", lane="worker") == 1
    assert value(found, "gridbus_consuming", route=NOTES.name) == 1
    assert not any(repeated in str(labels) for _, labels in found), "no message id in a label"


def test_readiness_is_lost_while_the_broker_is_unreachable_and_regained_after(broker_url, store):
    proxy = FreezableProxy((BROKER_HOST, urlsplit(broker_url).port or 5672))
    behind = broker_url.replace(f"{BROKER_HOST}:{urlsplit(broker_url).port or 5672}", f"127.0.0.1:{proxy.port}")
    try:
        with running_worker(ROUTES, behind, store, {"rec": RecordingAdapter()}, metrics=True) as worker, \
                served(worker) as base:
            wait_for(lambda: get(base + "/readyz")[0] == 200, what="ready")
            assert json.loads(get(base + "/readyz")[1])["lanes"]["worker"] == {
                "broker": True, "consuming": True, "store": True, "batch": True
            }

            proxy.sever()
            wait_for(lambda: get(base + "/readyz")[0] == 503, timeout=10, what="not ready once the broker is gone")
            status, body = get(base + "/readyz")
            lane = json.loads(body)["lanes"]["worker"]
            assert lane["consuming"] is False and lane["store"] is True
            assert get(base + "/healthz")[0] == 200, "alive all the same: no restart needed"
            assert value(samples(base), "gridbus_ready", lane="worker") == 0

            proxy.restore()
            wait_for(lambda: get(base + "/readyz")[0] == 200, timeout=20, what="ready again")
            assert value(samples(base), "gridbus_ready", lane="worker") == 1
    finally:
        proxy.close()


def test_an_unknown_path_or_method_is_refused(broker_url, store):
    with running_worker(ROUTES, broker_url, store, {"rec": RecordingAdapter()}, metrics=True) as worker, \
            served(worker) as base:
        assert get(base + "/admin")[0] == 404
        request = urllib.request.Request(base + "/readyz", method="POST", data=b"")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 405


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_worker_command_serves_its_probes_on_the_metrics_port(broker_url, tmp_path, pms):
    """As a process: ready, alive, and /metrics counting a dead letter twice over, as the worker
    settled it and as the worker's ingester archived it."""
    from tests.support.routes import SUBPROCESS_ROUTES

    # Declared first: the worker's ingester takes in only dead-letter queues that exist when it starts.
    declare_routes(broker_url, SUBPROCESS_ROUTES)
    port = free_port()
    store_url = f"sqlite:///{tmp_path}/store.sqlite3"
    worker = WorkerProcess(broker_url, store_url, "tests.support.routes:SUBPROCESS_ROUTES",
                           tmp_path, GRIDBUS_METRICS_PORT=port, GRIDBUS_METRICS_HOST="127.0.0.1",
                           GRIDBUS_ARCHIVE_INGEST="true").start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _answers(base + "/readyz") == 200, timeout=30, what="the worker process ready")
        assert get(base + "/healthz") == (200, '{"alive": true}')
        pms.publish("pms.out", "note.amqp", b"not json", message_type="Note")
        archive = Store(store_url)
        try:
            wait_for(lambda: archive.dead_letters.count() == 1, timeout=30, what="the dead letter archived")
        finally:
            archive.close()
        found = samples(base)  # the first scrape: the archive is read now
        route = "test.amqp-notes"
        assert value(found, "gridbus_messages_total", route=route, outcome="delivered") == 0
        assert value(found, "gridbus_messages_total", route=route, outcome="dead-lettered") == 1
        assert value(found, "gridbus_dead_letters_total", route=route, error_type="contract-violation") == 1
        assert value(found, "gridbus_archive_dead_letters", route=route) == 1
        assert 0 < time.time() - value(found, "gridbus_archive_oldest_unhandled_timestamp_seconds", route=route) < 60
        assert value(found, "gridbus_ready", lane="worker") == 1  # one lane: the worker's own name

        taken = WorkerProcess(broker_url, f"sqlite:///{tmp_path}/other.sqlite3",
                              "tests.support.routes:SUBPROCESS_ROUTES", tmp_path / "other",
                              GRIDBUS_METRICS_PORT=port, GRIDBUS_METRICS_HOST="127.0.0.1")
        (tmp_path / "other").mkdir()
        taken.start()
        assert taken.proc.wait(30) == 2, "a port already in use stops the second worker at start-up"
        assert f"GRIDBUS_METRICS_PORT={port}: cannot listen on 127.0.0.1:{port}" in taken.logs()
        taken.reap()
    finally:
        assert worker.terminate() == 0


def _answers(url: str) -> int | None:
    try:
        return get(url)[0]
    except OSError:  # not listening yet
        return None
