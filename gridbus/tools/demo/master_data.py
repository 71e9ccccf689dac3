"""The master-data part of ``gridbus demo`` (flow 10): both platforms change their objects.

PMS creates a public transformer (the example, accepted); marketing creates a metering point
(the example, accepted, and kept for the readings flow); then marketing sends a change of a
substation, which only PMS may write: refused as ``not-system-of-record``, answered with a FAILED
reply in marketing's inbox, and never forwarded. The data middle platform's inbox gets the two
accepted changes, and the trace of the substation's code shows the refusal.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from dataclasses import replace

from kombu import Connection
from lxml import etree

from gridbus.contracts import naming
from gridbus.contracts.canonical.envelope import NAMESPACE as MESSAGE_NS
from gridbus.contracts.metering_point import METERING_POINT, MeteringPointData
from gridbus.routes import master_data
from gridbus.routes.master_data import MKT_MASTER_DATA_CHANGED, PMS_MASTER_DATA_CHANGED
from gridbus.tools.demo.common import DEMO_RETRY, example_body, publish_as_source, take_all, wait_settled
from gridbus.workers import topology
from gridbus.workers.bootstrap import build_worker
from gridbus.workers.settings import Settings
from gridbus.workers.store import Store

WRONG_SYSTEM_CODE = "SUB-330106-0001"
_M = {"m": MESSAGE_NS}


def run_master_data_demo(broker_url: str, passwords: dict[str, str], echo) -> bool:
    routes = tuple(replace(r, retry=DEMO_RETRY) for r in master_data.ROUTES)
    with tempfile.TemporaryDirectory(prefix="gridbus-demo-master-data-") as tmp:
        settings = Settings(broker_url=broker_url, store_url=f"sqlite:///{tmp}/store.sqlite3")
        store = Store(settings.store_url)
        with Connection(broker_url) as admin:
            topology.declare(admin.channel(), topology.derive(routes))
        worker = build_worker(settings, routes, store=store, declare=False)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        echo("\nmaster data: PMS and marketing change their objects; the data middle platform receives them")
        story = [
            (PMS_MASTER_DATA_CHANGED, example_body("pms.MasterDataChanged.xml"),
             "PMS creates public transformer PTR-330106-7781 (公变)"),
            (MKT_MASTER_DATA_CHANGED, example_body("mkt.MasterDataChanged.json"),
             "marketing creates metering point MP3301060017001 (CT 40 x PT 100)"),
            (MKT_MASTER_DATA_CHANGED, _substation_from_marketing(example_body("mkt.MasterDataChanged.json")),
             f"marketing changes substation {WRONG_SYSTEM_CODE}, which PMS owns"),
        ]
        sent: dict[str, str] = {}
        ok = True
        for settled, (route, body, note) in enumerate(story, start=1):
            message_id = str(uuid.uuid4())
            sent[message_id] = route.source.system
            publish_as_source(broker_url, passwords, route, body, message_id, settings.source_user_names())
            ok &= wait_settled(worker, settled, echo, timeout_s=30)
            echo(f"  published  {route.name:<34} {note}")
        worker.stop()
        thread.join(10)
        replies, dmp, dead = _collect(broker_url, routes, sent)
        point = store.state.get_record(METERING_POINT, "MP3301060017001")
        trace = store.journal.trace(WRONG_SYSTEM_CODE)
        store.close()
        return _report(echo, worker.counts, replies, dmp, dead, point, trace) and ok


def _substation_from_marketing(body: bytes) -> bytes:
    document = json.loads(body)
    document.update(object_type="substation", business_code=WRONG_SYSTEM_CODE, operation="change", object_revision=5,
                    change_order_no="YD2026120800033", fields=[{"name": "Name", "old": "城东变", "new": "城东110kV变电站"}])
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _collect(broker_url: str, routes, sent: dict[str, str]):
    """The replies to the demo's messages (by sender), what reached the data middle platform, the dead letters."""
    with Connection(broker_url) as conn:
        replies = [
            (system, reply)
            for system in ("pms", "mkt")
            for reply in map(etree.fromstring, (m.body for m in take_all(conn, naming.system_inbox_queue(system))))
            if _text(reply, "m:Header/m:CorrelationID") in sent  # the request's message id
        ]
        dmp = [
            etree.fromstring(m.body) for m in take_all(conn, naming.system_inbox_queue("dmp"))
            if m.headers.get("x-gridbus-source-message-id") in sent
        ]
        dead = [m for r in routes for m in take_all(conn, r.dead_letter_queue)]
    return replies, dmp, dead


def _text(element, path: str) -> str:
    return element.findtext(path, namespaces=_M) or ""


def _report(echo, counts, replies, dmp, dead, point, trace) -> bool:
    echo("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    echo("replies (61968-100 ResponseMessage on <system>.in):")
    results = []
    for system, reply in replies:
        error = reply.find("m:Reply/m:Error", _M)
        result = _text(reply, "m:Reply/m:Result")
        line = f"  {system}.in  {_text(reply, 'm:Header/m:Noun'):<17} {result}"
        if error is not None:
            ident = error.find("m:ID", _M)
            line += (f" [{_text(error, 'm:code')}] {ident.text} (idAuthority {ident.get('idAuthority')}): "
                     f"{_text(error, 'm:reason')[:90]}")
        results.append((system, result, _text(error, "m:code") if error is not None else None))
        echo(line)
    echo("data middle platform inbox (dmp.in):")
    nouns = []
    for message in dmp:
        nouns.append((_text(message, "m:Header/m:Noun"), _text(message, "m:Header/m:Verb")))
        echo(f"  {nouns[-1][0]}.{nouns[-1][1]}")
    echo(f"trace of {WRONG_SYSTEM_CODE} (gridbus trace {WRONG_SYSTEM_CODE}):")
    for _at, event, route, _message_id, detail in trace:
        echo(f"  {event:<11} {route:<26} {detail[:110]}")
    data = MeteringPointData.from_data(point.data) if point is not None else None
    checks = {
        "the transformer and the metering point accepted": sorted(r[:2] for r in results if r[1] == "OK")
        == [("mkt", "OK"), ("pms", "OK")],
        "the substation from marketing refused as not-system-of-record": ("mkt", "FAILED", "not-system-of-record")
        in results,
        "only the accepted changes reached the data middle platform": sorted(nouns)
        == [("PowerTransformer", "created"), ("UsagePoint", "created")],
        "the metering point kept for the readings flow (multiplier 4000)": data is not None
        and data.multiplier == 4000,
        "the trace shows the refusal": any("not-system-of-record" in detail for *_, detail in trace),
        "no dead letters": not dead,
    }
    echo("checks:")
    for name, ok in checks.items():
        echo(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return all(checks.values())
