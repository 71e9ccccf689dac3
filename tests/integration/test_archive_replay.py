"""Replays from the archive against the real RabbitMQ: at a rate, cut off and resumed without
losing or doubling a letter; edit and replay checked against the route's contract first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import amqp
import pytest

from tests.integration.test_dlq import REPO, drain
from gridbus.tools.archive import archived
from gridbus.tools.dlq import DlqError
from gridbus.tools.letters import DeadLetter
from gridbus.tools.replay import EDITED_FROM, REPLAY_ID, edit_and_replay, replay
from gridbus.workers import headers as H
from gridbus.workers.store import Store
from gridbus.workers.store.dead_letters import Selection

pytestmark = pytest.mark.broker


def take(ch, queue: str, expected: int, quiet_s: float = 0.3) -> list[amqp.Message]:
    """Consume ``queue`` (acking) until ``expected`` messages came and then nothing for ``quiet_s``:
    a repeat beyond ``expected`` is caught too."""
    taken: list[amqp.Message] = []
    ch.basic_qos(0, 1000, False)
    tag = ch.basic_consume(queue, callback=taken.append, no_ack=True)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            try:
                ch.connection.drain_events(timeout=quiet_s if len(taken) >= expected else 1.0)
            except TimeoutError:
                if len(taken) >= expected:
                    break
    finally:
        ch.basic_cancel(tag)
    return taken


def fill(store: Store, route, n: int, *, body=b'{"a": 1}') -> list[str]:
    """Archive ``n`` dead letters of ``route`` as the ingester would; their message ids."""
    stamp = datetime.now(timezone.utc).isoformat()
    ids, letters = [], []
    for _ in range(n):
        message_id = str(uuid.uuid4())
        headers = {H.ERROR_TYPE: "delivery-failed", H.ERROR_MESSAGE: "peer down", H.ROUTE: route.name,
                   H.ATTEMPT: 5, H.FIRST_FAILURE_AT: stamp, H.DEAD_LETTERED_AT: stamp, H.SOURCE_USER: "pms"}
        properties = {"message_id": message_id, "type": route.contract.message_type, "delivery_mode": 2}
        letter = DeadLetter(route.name, route.dead_letter_queue, body, {**properties, "application_headers": headers},
                            headers)
        letters.append(archived(letter, route, time.time()))
        ids.append(message_id)
    store.dead_letters.ingest(letters, at=time.time())
    return ids


_KILLED_HALFWAY = """
import os, signal, sys
from tests.integration.test_dlq import make_routes
from gridbus.tools.replay import replay
from gridbus.workers.store import Store
from gridbus.workers.store.dead_letters import Selection

def cut(sent):
    if sent >= 1000:
        os.kill(os.getpid(), signal.SIGKILL)

def cut_before_marking(confirmed):
    os.kill(os.getpid(), signal.SIGKILL)

hooks = {"after_mark": cut} if sys.argv[4] == "after-marking" else {"after_confirm": cut_before_marking}
replay(sys.argv[1], make_routes(sys.argv[2]), Store(sys.argv[3]), Selection(), replay_id="r-cut", operator="ops-1",
       chunk=200, **hooks)
"""


def _cut_replay(broker_url, routes, url, where):
    suffix = routes[0].name.rsplit("-", 1)[1]
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_HALFWAY, broker_url, suffix, url, where],
        cwd=REPO, capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


def test_a_replay_of_2000_cut_off_halfway_and_resumed_sends_each_once(broker_url, own_routes, own_channel, tmp_path):
    routes, channel = own_routes, own_channel
    pms, _ = routes
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = Store(url)
    try:
        ids = fill(store, pms, 2000)
        _cut_replay(broker_url, routes, url, "after-marking")
        first = take(channel, pms.work_queue, 1000)
        cut = store.replays.progress("r-cut")
        assert (cut.total, cut.sent, cut.state) == (2000, 1000, "running")
        assert len(first) == 1000 and store.dead_letters.count() == 1000  # the rest still archived, unhandled

        seen = []
        done = replay(broker_url, routes, store, replay_id="r-cut", operator="ops-2", rate=4000,
                      progress=lambda p: seen.append(p.sent))
        rest = take(channel, pms.work_queue, 1000)
        assert (done.sent, done.left, done.state) == (2000, 0, "done") and seen[-1] == 2000
        delivered = [m.properties["message_id"] for m in first + rest]
        assert sorted(delivered) == sorted(ids)  # every letter once, none twice
        copy = rest[0].properties["application_headers"]
        assert copy[REPLAY_ID] == "r-cut" and copy[H.REPLAYED_BY] == "ops-2" and copy[H.REPLAYED] == 1
        assert copy[H.FIRST_FAILURE_AT] and copy[H.ERROR_TYPE] == "delivery-failed"  # the history is kept
        assert store.dead_letters.count() == 0 and store.dead_letters.count(Selection(status="replayed")) == 2000
        [audited] = store.audit.rows(action="replay")
        assert audited.count == 2000 and audited.detail["replay_id"] == "r-cut" and audited.who == "ops-1"
    finally:
        store.close()


def test_cut_between_confirm_and_mark_resends_only_that_chunk_under_the_same_ids(broker_url, own_routes, own_channel, tmp_path):
    routes, channel = own_routes, own_channel
    pms, _ = routes
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = Store(url)
    try:
        ids = fill(store, pms, 300)
        _cut_replay(broker_url, routes, url, "before-marking")
        first = drain(channel, pms.work_queue)
        assert len(first) == 200 and store.dead_letters.count() == 300  # confirmed, never marked
        replay(broker_url, routes, store, replay_id="r-cut")
        again = drain(channel, pms.work_queue)
        assert len(again) == 300
        delivered = [m.properties["message_id"] for m in first + again]
        assert set(delivered) == set(ids)
        # the repeats carry the ids they had: the route's idempotency store drops them
        assert sorted(delivered).count(first[0].properties["message_id"]) == 2
    finally:
        store.close()


def test_a_replay_keeps_to_its_rate(broker_url, own_routes, own_channel, store):
    routes, channel = own_routes, own_channel
    pms, _ = routes
    fill(store, pms, 300)
    began = time.monotonic()
    done = replay(broker_url, routes, store, Selection(route=pms.name), rate=1000)
    took = time.monotonic() - began
    assert done.sent == 300 and len(drain(channel, pms.work_queue)) == 300
    assert took >= 0.29  # 300 at 1,000/s take at least 0.3 s


class Strict:
    """A contract that takes only JSON bodies with an "amount" number."""

    message_type = "SupplyPlanPushed"

    @classmethod
    def decode(cls, body: bytes):
        import json

        from gridbus.contracts.errors import ContractViolation

        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ContractViolation(f"not JSON: {exc}") from None
        if not isinstance(data.get("amount"), (int, float)):
            raise ContractViolation("field amount: a number is required")
        return data


def test_edit_and_replay_checks_the_contract_and_sends_under_a_new_id(broker_url, own_routes, own_channel, store):
    routes, channel = own_routes, own_channel
    from dataclasses import replace

    pms, mkt = routes
    mkt = replace(mkt, contract=Strict)
    [original] = fill(store, mkt, 1, body=b'{"amount": "12,5"}')
    [letter] = store.dead_letters.search()
    with pytest.raises(DlqError, match="field amount: a number is required; nothing sent"):
        edit_and_replay(broker_url, [pms, mkt], store, letter.seq, b'{"amount": "still text"}')
    with pytest.raises(DlqError, match="cannot be edited"):
        edit_and_replay(broker_url, [pms, mkt], store, letter.seq, b'{"amount": 12.5}', headers={H.ATTEMPT: 1})
    assert drain(channel, mkt.work_queue) == [] and store.audit.rows() == []

    result = edit_and_replay(broker_url, [pms, mkt], store, letter.seq, b'{"amount": 12.5}', operator="ops-3")
    [copy] = drain(channel, mkt.work_queue)
    assert copy.body == b'{"amount": 12.5}'
    assert copy.properties["message_id"] == result.message_id and result.message_id.startswith(original + "~edit-")
    assert copy.properties["application_headers"][EDITED_FROM] == original
    [row] = store.audit.rows()
    assert (row.action, row.who) == ("edit-replay", "ops-3")
    assert row.detail["before"] == '{"amount": "12,5"}' and row.detail["after"] == '{"amount": 12.5}'
    assert '-{"amount": "12,5"}' in row.detail["diff"] and '+{"amount": 12.5}' in row.detail["diff"]
    assert store.dead_letters.get(letter.seq).status == "replayed"
