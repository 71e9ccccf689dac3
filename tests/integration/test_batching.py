"""How the worker forms batches: full under a backlog, closed after the linger under a trickle,
never larger than ``batch_size`` (the first batch after a start included).

The batches are observed where they are formed (``Intake.fill``) and processed
(``Settlement.process``); the bounds on time are generous, what is asserted is which batch each
message was processed in.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.amqp import UpstreamSystem, declare_routes, running_worker, wait_for
from tests.support.fakes import RecordingAdapter
from tests.support.routes import AMQP_ONLY_NOTES, NOTES, REVISED_NOTES, note_body
from gridbus.workers.intake import Intake
from gridbus.workers.settlement import Settlement

pytestmark = pytest.mark.broker


@pytest.fixture
def pms(broker_url, vhost, system_users):
    declare_routes(broker_url, [AMQP_ONLY_NOTES, NOTES, REVISED_NOTES])
    system = UpstreamSystem(vhost, *system_users["pms"])
    yield system
    system.close()


def publish(pms, n: int = 1) -> list[str]:
    key = uuid.uuid4().hex
    return [pms.publish("pms.out", "note.amqp", note_body(key, f"n{i}"), message_type="Note") for i in range(n)]


@pytest.fixture
def batches(monkeypatch):
    """What the worker does with batches: ``fills`` holds (seconds from the batch's first message
    to its close, size) of every fill that closed a batch; ``processed`` the message ids of every
    batch processed, in order."""

    class Seen:
        fills: list[tuple[float, int]] = []
        processed: list[list[str]] = []

    fill, process = Intake.fill, Settlement.process

    def spy_fill(self, idle_timeout_s):
        fill(self, idle_timeout_s)
        if self.buffer:
            opened = self._batch_opened  # None: full at once, from frames already read
            waited = 0.0 if opened is None else time.monotonic() - opened
            Seen.fills.append((waited, min(len(self.buffer), self.batch_size)))

    def spy_process(self, batch, suspect=False):
        Seen.processed.append([d.message_id for d in batch])
        return process(self, batch, suspect)

    monkeypatch.setattr(Intake, "fill", spy_fill)
    monkeypatch.setattr(Settlement, "process", spy_process)
    return Seen


def test_a_lone_message_is_processed_when_the_linger_is_over(broker_url, store, pms, batches, monkeypatch):
    """With the quiet gap out of the way, only the linger can close a batch of one: the message is
    processed alone, the linger after it was taken, not when a batch of 100 is full."""
    monkeypatch.setattr(Intake, "QUIET_S", 30.0)
    linger = 0.05
    with running_worker([AMQP_ONLY_NOTES], broker_url, store, batch_linger_s=linger) as worker:
        [message_id] = publish(pms)
        wait_for(lambda: worker.counts.get("delivered") == 1, timeout=10, what="the lone message processed")
    assert batches.processed == [[message_id]]
    [(waited, size)] = batches.fills
    assert size == 1
    assert linger - 0.002 <= waited < linger + 1.0, f"batch closed {waited:.3f} s after its message"


def test_a_steady_trickle_is_cut_into_batches_by_the_linger(broker_url, store, pms, batches, monkeypatch):
    """Messages 10 ms apart never leave the socket quiet for QUIET_S (set to 30 s here): before
    the linger, they all waited in one batch until it was full."""
    monkeypatch.setattr(Intake, "QUIET_S", 30.0)
    linger = 0.05
    with running_worker([AMQP_ONLY_NOTES], broker_url, store, batch_linger_s=linger) as worker:
        ids = []
        for _ in range(40):
            ids += publish(pms)
            time.sleep(0.01)
        wait_for(lambda: worker.counts.get("delivered") == 40, timeout=10, what="40 messages processed")
    assert [m for batch in batches.processed for m in batch] == ids
    assert len(batches.processed) >= 3, f"40 messages over 0.4 s in {len(batches.processed)} batches"
    assert all(linger - 0.002 <= waited < linger + 1.0 for waited, _ in batches.fills), batches.fills


def test_a_backlog_is_processed_in_full_batches_and_the_first_is_no_larger(broker_url, store, pms, batches):
    """1,000 messages waiting when the worker starts: batches of ``batch_size`` throughout. The
    backlog's route is subscribed first; subscribing to the others reads its deliveries up to the
    prefetch (200) before the loop starts, and the first batch took them all."""
    ids = publish(pms, 1000)
    rec = RecordingAdapter()
    with running_worker([AMQP_ONLY_NOTES, NOTES, REVISED_NOTES], broker_url, store, {"rec": rec},
                        prefetch=200, batch_size=100) as worker:
        wait_for(lambda: worker.counts.get("delivered") == 1000, timeout=60, what="1000 messages processed")
    assert [m for batch in batches.processed for m in batch] == ids
    assert [len(batch) for batch in batches.processed] == [100] * 10
