"""Flow 9 end to end: meter data collection as a pika publisher, the real RabbitMQ, the worker (in a
thread, and as a process that is SIGKILLed), the trading center's SOAP stub, and the inboxes of
marketing and the collection system."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from dataclasses import replace
from datetime import datetime

import pytest
from click.testing import CliRunner
from lxml import etree

from gridbus.adapters.soap import SoapAdapter
from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.canonical.envelope import NAMESPACE as MESSAGE_NS
from gridbus.contracts.canonical.meter_readings import METER_READINGS_NAMESPACE
from gridbus.contracts.soap import peer_wsdl
from gridbus.mappings.readings import decision as readings
from gridbus.tools.cli import main as cli
from gridbus.tools.readings_batch import CHINA, Batch, good_record, point_id
from tests.support.amqp import UpstreamSystem, dead_letter_reader, declare_routes, inbox_reader, running_worker, wait_for
from tests.support.processes import WorkerProcess
from tests.support.readings import (
    DAY, NOW, decide, fast_route, market_point, previous_day, problem_history, seed, thousand_with_problems,
)

pytestmark = pytest.mark.broker

ROUTE = fast_route()
M = {"m": MESSAGE_NS}
R = {"r": METER_READINGS_NAMESPACE}


@pytest.fixture
def tc_stub():
    with SoapStub(peer_wsdl("tc"), path="/tc") as stub:
        yield stub


@pytest.fixture
def mdc(vhost, system_users):
    system = UpstreamSystem(vhost, *system_users["mdc"])
    yield system
    system.close()


def publish(mdc, body: bytes, message_id: str | None = None) -> str:
    return mdc.publish(ROUTE.source.exchange, ROUTE.source.routing_key, body, message_id=message_id,
                       message_type="DailyFrozenPublished", content_type="application/xml")


def worker_for(broker_url, store, stub, chunk: int = 3):
    adapter = SoapAdapter("tc", peer_wsdl("tc"), stub.url, timeout_s=5)
    return running_worker((ROUTE,), broker_url, store, {"tc": adapter}, clock=lambda: NOW,
                          options={"readings_tc_chunk_size": chunk})


def replies(inbox, message_id: str) -> list[etree._Element]:
    found = []
    for m in inbox.where(lambda m: m.properties.get("type") == "ResponseMessage"):
        root = etree.fromstring(m.body)
        if root.findtext("m:Header/m:CorrelationID", namespaces=M) == message_id:
            found.append(root)
    return found


def readings_sent(inbox, batch_id: str) -> dict[str, list]:
    """message id -> [(verb, usage point, quality codes)] of the MeterReadings sent for ``batch_id``."""
    sent: dict[str, list] = {}
    for m in inbox.where(lambda m: m.properties.get("type") == "MeterReadings"):
        root = etree.fromstring(m.body)
        props = {p.findtext("m:Name", namespaces=M): p.findtext("m:Value", namespaces=M)
                 for p in root.iterfind("m:Header/m:Property", namespaces=M)}
        if props.get("batchID") != batch_id:
            continue
        verb = root.findtext("m:Header/m:Verb", namespaces=M)
        sent[m.properties["message_id"]] = [
            (verb, r.findtext("r:UsagePoint/r:mRID", namespaces=R),
             sorted({q.get("ref") for q in r.iterfind("r:Readings/r:ReadingQualities/r:ReadingQualityType", namespaces=R)}))
            for r in root.iterfind("m:Payload/r:MeterReadings/r:MeterReading", namespaces={**M, **R})
        ]
    return sent


def tc_points(stub, batch_id: str) -> Counter:
    points = Counter()
    for call in stub.effects("ReceiveMeterReadings"):
        if call.payload["BatchId"] == batch_id:
            points.update(r["MeteringPointId"] for r in call.payload["MeterReadings"]["MeterReading"])
    return points


def test_a_part_of_1000_with_every_problem_kind(broker_url, store, tc_stub, mdc):
    problem_history(store)
    decide(store, previous_day(range(1, 988)), "prev")
    market = [5, 6, 7, 1907, 1912]  # 1912's record is a correction; 1901's is withheld
    seed(store, [market_point(n, datetime(2026, 11, 1, tzinfo=CHINA)) for n in (*market, 1901)])
    seed(store, [market_point(8, datetime(2026, 12, 3, tzinfo=CHINA))])  # in the market only from tomorrow
    batch_id = f"MDC-E2E-{uuid.uuid4().hex[:8]}"
    batch, at = thousand_with_problems(batch_id)
    mdc_inbox, mkt_inbox = inbox_reader(broker_url, "mdc"), inbox_reader(broker_url, "mkt")
    with worker_for(broker_url, store, tc_stub) as worker:
        message_id = publish(mdc, batch.xml())
        wait_for(lambda: worker.counts.get("delivered", 0) >= 1, what="the part delivered")
    [reply] = replies(mdc_inbox, message_id)
    assert reply.findtext("m:Reply/m:Result", namespaces=M) == "PARTIAL"
    errors = {(int(e.findtext("m:xpath", namespaces=M).rsplit("[", 1)[1].rstrip("]")), e.findtext("m:code", namespaces=M),
               e.findtext("m:level", namespaces=M), e.findtext("m:ID", namespaces=M))
              for e in reply.iterfind("m:Reply/m:Error", namespaces=M)}
    from tests.integration.test_readings_store import EXPECTED
    expected = {(at[kind], code, readings.rules.RULES[code].level, point_id(1901 + list(at).index(kind)))
                for kind, codes in EXPECTED.items() for code in codes}
    assert errors == expected
    sent = readings_sent(mkt_inbox, batch_id)
    assert len(sent) == 2
    created = next(v for v in sent.values() if v[0][0] == "created")
    [changed] = [v for v in sent.values() if v[0][0] == "changed"]
    assert changed == [("changed", point_id(1912), [])]
    qualities = {point: q for _, point, q in created}
    assert len(created) == 1000 - 7 - 1 - 1  # withheld, repeat and correction left out
    assert qualities[point_id(1907)] == ["2.6.1"] and qualities[point_id(1908)] == ["2.4.1"]
    assert qualities[point_id(1909)] == ["2.6.2"] and qualities[point_id(1910)] == ["2.5.1"]
    assert qualities[point_id(1)] == [] and point_id(1904) not in qualities
    assert tc_points(tc_stub, batch_id) == Counter({point_id(n): 1 for n in market})
    calls = [c for c in tc_stub.effects("ReceiveMeterReadings") if c.payload["BatchId"] == batch_id]
    assert sorted(int(c.payload["ChunkNo"]) for c in calls) == [1, 2] and {c.payload["ChunkCount"] for c in calls} == {"2"}
    assert any(r["Correction"] == "true" for c in calls for r in c.payload["MeterReadings"]["MeterReading"])


def test_a_gbk_part_keeps_its_chinese_org_name_and_a_redelivery_or_resend_changes_nothing(broker_url, store, tc_stub, mdc):
    batch_id = f"MDC-GBK-{uuid.uuid4().hex[:8]}"
    points = range(3001, 3011)
    seed(store, [market_point(n, datetime(2026, 11, 1, tzinfo=CHINA)) for n in points])
    decide(store, previous_day(points), "prev-gbk")
    batch = Batch(batch_id, DAY, tuple(good_record(n, DAY) for n in points), org_no="43403", org_name="国网湘潭供电公司（岳塘区）")
    mdc_inbox, mkt_inbox = inbox_reader(broker_url, "mdc"), inbox_reader(broker_url, "mkt")
    with worker_for(broker_url, store, tc_stub, chunk=4) as worker:
        first = publish(mdc, batch.xml("GBK"))
        wait_for(lambda: worker.counts.get("delivered", 0) >= 1, what="the GBK part")
        publish(mdc, batch.xml("GBK"), message_id=first)  # redelivered under its id
        resent = publish(mdc, batch.xml("GB18030"))  # sent again under a new id
        wait_for(lambda: sum(worker.counts.values()) >= 3, what="the repeats")
        assert worker.counts == {"delivered": 2, "duplicate": 1}
    trace = [row[4] for row in store.journal.trace(batch_id) if row[1] == "state"]
    assert "org 43403" in trace[0] and "accepted 10" in trace[0] and "accepted 0" in trace[1]
    assert store.state.get_record("readings-part", f"{batch_id}/1").data["org_no"] == "43403"
    [again] = replies(mdc_inbox, resent)
    assert again.findtext("m:Reply/m:Result", namespaces=M) == "OK"
    assert {e.findtext("m:code", namespaces=M) for e in again.iterfind("m:Reply/m:Error", namespaces=M)} == {"repeat"}
    sent = readings_sent(mkt_inbox, batch_id)
    assert [len(v) for v in sent.values()] == [10]  # only the first sent anything
    assert tc_points(tc_stub, batch_id) == Counter({point_id(n): 1 for n in points})
    assert {store.state.get_record("last-reading", point_id(n)).version for n in points} == {2}  # prev, then once
    shown = CliRunner().invoke(cli, ["trace", batch_id, "--store", store.url])
    assert shown.exit_code == 0, shown.output
    for what in ("part 1 of 1 (2026-12-02, org 43403): OK; received 10, accepted 10", "mkt-readings -> mkt meter-readings.created",
                 "tc-readings/1 -> tc ReceiveMeterReadings", "tc-readings/3 -> tc ReceiveMeterReadings",
                 "mdc-reply -> mdc daily-frozen.reply", "parts received 1 of 1, complete"):
        assert what in shown.output, shown.output
    assert shown.output.rstrip().splitlines()[-1] == f"batch {batch_id}: parts received 1 of 1, complete"


def test_a_body_over_the_routes_limit_is_refused_with_advice_to_split(broker_url, store, tc_stub, mdc):
    dlq = dead_letter_reader(broker_url, ROUTE)
    big = replace(ROUTE, max_body_bytes=2000)
    body = Batch(f"MDC-BIG-{uuid.uuid4().hex[:6]}", DAY, tuple(good_record(n, DAY) for n in range(1, 20))).xml()
    adapter = SoapAdapter("tc", peer_wsdl("tc"), tc_stub.url, timeout_s=5)
    with running_worker((big,), broker_url, store, {"tc": adapter}, clock=lambda: NOW) as worker:
        message_id = publish(mdc, body)
        wait_for(lambda: worker.counts.get("dead-lettered", 0) >= 1, what="the refusal")
    [letter] = [m for m in dlq.drain() if m.properties.get("message_id") == message_id]
    reason = letter.headers["x-gridbus-error"]
    assert "exceeds the limit of 2000 bytes of route mdc.daily-frozen-published" in reason and "split the batch" in reason


def test_a_worker_killed_mid_part_sends_each_record_once_per_target(broker_url, tmp_path, tc_stub, mdc):
    from gridbus.workers.store import Store

    store_url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = Store(store_url)
    parts = [Batch(f"MDC-KILL-{uuid.uuid4().hex[:6]}", DAY, tuple(good_record(n, DAY) for n in range(4000 + 300 * p, 4300 + 300 * p)),
                   part_no=1, part_count=1) for p in range(3)]
    seed(store, [market_point(n, datetime(2026, 11, 1, tzinfo=CHINA)) for b in parts for n in range(4000, 4900, 3)])
    tc_stub.delay_s = 3
    tc_stub.fail_next(1, "delay")  # holds the first trading-center call: the worker is mid-batch
    mkt_inbox, mdc_inbox = inbox_reader(broker_url, "mkt"), inbox_reader(broker_url, "mdc")
    worker = WorkerProcess(broker_url, store_url, "tests.support.readings:ROUTES", tmp_path,
                           gridbus_soap_peers=f"tc={tc_stub.url}", gridbus_readings_tc_chunk_size=50)
    declare_routes(broker_url, (ROUTE,))
    ids = [publish(mdc, b.xml()) for b in parts]
    try:
        worker.start()
        wait_for(lambda: len(tc_stub.calls) >= 1 or any(readings_sent(mkt_inbox, b.batch_id) for b in parts), timeout=60,
                 what="the worker into the batch")
        worker.signal(signal.SIGKILL)
        worker.proc.wait(10)
        worker.reap()
        assert not any(replies(mdc_inbox, i) for i in ids), "killed before the parts' replies: mid-batch"
        tc_stub.clear_faults()
        worker.start()
        wait_for(lambda: all(replies(mdc_inbox, i) for i in ids), timeout=90, what="every part replied")
    finally:
        worker.close()
    for b in parts:
        by_point = Counter()
        for message_id, sent in readings_sent(mkt_inbox, b.batch_id).items():
            by_point.update({point for _, point, _ in sent})
        assert by_point == Counter({r.point: 1 for r in b.records}), "each record under one output id"
        market = {point_id(n) for n in range(4000, 4900, 3)} & {r.point for r in b.records}
        assert tc_points(tc_stub, b.batch_id) == Counter(dict.fromkeys(market, 1))
    versions = {store.state.get_record("last-reading", r.point).version for b in parts for r in b.records}
    assert versions == {1}  # the state moved once
    store.close()


def test_two_consumers_in_one_worker_share_a_batchs_parts_on_postgresql(broker_url, tmp_path, pg_schema_url, tc_stub, mdc):
    """GRIDBUS_LANE_CONSUMERS=2: the parts of one batch go to both consumers, each decided once
    and none retried (the parts never refuse each other), every record sent once."""
    import json

    from gridbus.workers.store import Store

    store = Store(pg_schema_url)
    batch_id = f"MDC-TWO-{uuid.uuid4().hex[:6]}"
    # parts of 1,000 records: long enough in hand that the second consumer is up before the first has taken them all
    parts = [Batch(batch_id, DAY, tuple(good_record(n, DAY) for n in range(6000 + 1000 * p, 7000 + 1000 * p)),
                   part_no=p + 1, part_count=6) for p in range(6)]
    mkt_inbox, mdc_inbox = inbox_reader(broker_url, "mkt"), inbox_reader(broker_url, "mdc")
    worker = WorkerProcess(broker_url, pg_schema_url, "tests.support.readings:ROUTES", tmp_path,
                           gridbus_soap_peers=f"tc={tc_stub.url}", gridbus_lane_consumers=2,
                           gridbus_prefetch=1, gridbus_batch_size=1)
    declare_routes(broker_url, (ROUTE,))
    ids = [publish(mdc, b.xml()) for b in parts]
    try:
        worker.start()
        wait_for(lambda: all(replies(mdc_inbox, i) for i in ids), timeout=90, what="every part replied")
    finally:
        worker.close()
    entries = [json.loads(line) for line in worker.log_path.read_text(errors="replace").splitlines() if line.startswith("{")]
    outcomes = [(e.get("lane"), e["outcome"]) for e in entries if e.get("route") == ROUTE.name and "outcome" in e]
    assert sorted(o for _, o in outcomes) == ["delivered"] * 6, outcomes
    assert {lane for lane, _ in outcomes} == {"tc#1", "tc#2"}, outcomes
    sent = Counter(point for message in readings_sent(mkt_inbox, batch_id).values() for _, point, _ in message)
    assert sent == Counter({r.point: 1 for b in parts for r in b.records})
    shown = CliRunner().invoke(cli, ["trace", batch_id, "--store", pg_schema_url])
    assert shown.output.rstrip().splitlines()[-1] == f"batch {batch_id}: parts received 6 of 6, complete"
    store.close()
