"""The meter-readings part of ``gridbus demo``: flow 9, a part of 1,000 daily frozen readings with
one record of every problem kind.

The store is prepared as the days before would have left it (the last readings of the metering
points, the master data of two of them, five points in the retail market); meter data
collection then publishes the part. The demo shows the reply (PARTIAL, one Error per problem),
what marketing and the trading center got, and the batch's trace.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from dataclasses import replace
from datetime import datetime

from kombu import Connection
from lxml import etree

from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts import naming
from gridbus.contracts.canonical.envelope import NAMESPACE
from gridbus.contracts.soap import peer_wsdl
from gridbus.routes.meter_readings import DAILY_FROZEN_PUBLISHED
from gridbus.tools.demo.common import DEMO_RETRY, collect, declare_with_events_tap, publish_as_source, take_all, wait_settled
from gridbus.tools.readings_batch import (
    CHINA, NOW, decide, market_point, previous_day, problem_history, seed, thousand_with_problems,
)
from gridbus.workers.bootstrap import build_worker
from gridbus.workers.settings import Settings
from gridbus.workers.store import Store

M = {"m": NAMESPACE}
MARKET = (5, 6, 7, 1907, 1912)
#: What the reply must hold: one problem record of every kind, nothing else.
EXPECTED_CODES = {
    "negative-value", "tariff-sum-mismatch", "multiplier-mismatch", "register-backwards", "consumption-implausible",
    "date-mismatch", "older-than-accepted", "first-reading", "gap", "meter-exchange", "register-rollover", "repeat",
    "correction",
}


def run_readings_demo(broker_url: str, passwords: dict[str, str], echo) -> bool:
    routes = (replace(DAILY_FROZEN_PUBLISHED, retry=DEMO_RETRY),)
    batch_id = f"MDC-DEMO-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="gridbus-demo-readings-") as tmp, SoapStub(peer_wsdl("tc"), path="/tc") as stub:
        settings = Settings(broker_url=broker_url, store_url=f"sqlite:///{tmp}/store.sqlite3", soap_peers={"tc": stub.url},
                            readings_tc_chunk_size=2)
        store = Store(settings.store_url)
        problem_history(store)
        decide(store, previous_day(range(1, 988)), "demo-previous-day")
        seed(store, [market_point(n, datetime(2026, 11, 1, tzinfo=CHINA)) for n in MARKET])
        events_tap = declare_with_events_tap(broker_url, routes)
        worker = build_worker(settings, routes, store=store, declare=False, clock=lambda: NOW)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        batch, at = thousand_with_problems(batch_id)
        message_id = str(uuid.uuid4())
        echo(f"\nmeter readings: part 1 of batch {batch_id}, 1,000 records, one of every problem kind")
        publish_as_source(broker_url, passwords, routes[0], batch.xml(), message_id, settings.source_user_names())
        ok = wait_settled(worker, 1, echo, timeout_s=60)
        worker.stop()
        thread.join(10)
        with Connection(broker_url) as conn:
            replies = take_all(conn, naming.system_inbox_queue("mdc"))
        inbox, events, dead = collect(broker_url, routes, events_tap)
        trace = store.journal.trace(batch_id)
        store.close()
        return _report(echo, message_id, replies, inbox, stub, events, dead, trace, at) and ok


def _report(echo, message_id, replies, inbox, stub, events, dead, trace, at) -> bool:
    reply = next((etree.fromstring(m.body) for m in replies
                  if etree.fromstring(m.body).findtext("m:Header/m:CorrelationID", namespaces=M) == message_id), None)
    errors = [] if reply is None else list(reply.iterfind("m:Reply/m:Error", namespaces=M))
    result = None if reply is None else reply.findtext("m:Reply/m:Result", namespaces=M)
    echo(f"reply to meter data collection (mdc.in): Result {result}, {len(errors)} error(s)")
    for e in errors:
        echo(f"  {e.findtext('m:level', namespaces=M):<7} {e.findtext('m:code', namespaces=M):<24} "
             f"{e.findtext('m:reason', namespaces=M)[:110]}")
    readings = [m for m in inbox if m.properties.get("type") == "MeterReadings"]
    for m in readings:
        verb = etree.fromstring(m.body).findtext("m:Header/m:Verb", namespaces=M)
        echo(f"marketing (mkt.in): MeterReadings {verb}, {m.body.count(b'<MeterReading>')} record(s), {len(m.body)} bytes")
    calls = stub.effects("ReceiveMeterReadings")
    points = sorted(r["MeteringPointId"] for c in calls for r in c.payload["MeterReadings"]["MeterReading"])
    echo(f"trading center (SOAP ReceiveMeterReadings): {len(calls)} chunk(s), points {', '.join(points)}")
    echo("canonical events: " + ", ".join(sorted({m.delivery_info.get('routing_key') for m in events})))
    echo("trace of the batch (gridbus trace BATCHID):")
    for _at, event, route, _message_id, detail in trace:
        echo(f"  {event:<10} {detail[:150]}")
    codes = {e.findtext("m:code", namespaces=M) for e in errors}
    checks = {
        "the reply is PARTIAL with an error for every problem kind and no other": result == "PARTIAL" and codes == EXPECTED_CODES
        and {int(e.findtext("m:xpath", namespaces=M).rsplit("[", 1)[1][:-1]) for e in errors} == set(at.values()),
        "marketing got the accepted records (created) and the correction (changed)": sorted(
            etree.fromstring(m.body).findtext("m:Header/m:Verb", namespaces=M) for m in readings) == ["changed", "created"],
        "only the market points went to the trading center": len(points) == len(MARKET),
        "the trace shows the part, complete": any("parts received 1 of 1, complete" in row[4] for row in trace),
        "no dead letters": not dead,
    }
    echo("checks:")
    for name, passed in checks.items():
        echo(f"  [{'ok' if passed else 'FAILED'}] {name}")
    return all(checks.values())
