"""The retail-market part of ``gridbus demo``: flows 5-8 end to end, with a clock the demo moves.

The trading center (a loopback SOAP stub, and the ``tc`` publisher) pushes a sales-company
archive that is accepted and one from seed 000's Fig. 9 that is rejected for its credit code;
two retail user units pass review, marketing approves their agreement drafts, the agreements
go to the trading center and are signed: one takes effect in
6 days (ownership established at once), the other in 41 days (ownership scheduled). The demo
then moves the worker's clock 27 days on, the schedule falls due, and the second ownership is
established. Last, the trace of that user unit, as ``gridbus trace`` prints it.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

from lxml import etree

from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.soap import peer_wsdl
from gridbus.routes import retail_market
from gridbus.routes.retail_market import (
    AGREEMENT_DRAFT_REVIEWED,
    SALES_COMPANY_ARCHIVE_PUSHED,
    TRIPARTITE_AGREEMENT_SIGNED,
    USER_UNIT_REVIEW_PASSED,
)
from gridbus.workers.bootstrap import build_worker
from gridbus.tools.demo.common import DEMO_RETRY, collect, declare_with_events_tap, example_body, publish_as_source, wait_settled
from gridbus.workers.runtime import CHINA_TZ
from gridbus.workers.settings import Settings
from gridbus.workers.store import Store

#: When the demo's story starts: the example agreement was signed on this day.
START = datetime(2026, 11, 25, 17, 0, tzinfo=CHINA_TZ)
SCHEDULED_USER = "RU2026110002"

_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class DemoClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def run_retail_demo(broker_url: str, passwords: dict[str, str], echo) -> bool:
    routes = tuple(replace(r, retry=DEMO_RETRY) for r in retail_market.ROUTES)
    clock = DemoClock(START)
    with tempfile.TemporaryDirectory(prefix="gridbus-demo-retail-") as tmp, SoapStub(peer_wsdl("tc"), path="/tc") as stub:
        settings = Settings(
            broker_url=broker_url, store_url=f"sqlite:///{tmp}/store.sqlite3", soap_peers={"tc": stub.url}
        )
        store = Store(settings.store_url)
        events_tap = declare_with_events_tap(broker_url, routes)
        worker = build_worker(settings, routes, store=store, declare=False, clock=clock, schedule_poll_s=0.1)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        echo(f"\nretail market: trading center SOAP stub at {stub.url}; the worker's clock reads {START.isoformat()}")
        settled = 0
        story = [
            (SALES_COMPANY_ARCHIVE_PUSHED, example_body("tc.SalesCompanyArchivePushed.xml"), "sales-company archive"),
            (SALES_COMPANY_ARCHIVE_PUSHED, _fig9_row1(example_body("tc.SalesCompanyArchivePushed.xml")),
             "archive of Fig. 9 row 1 (太原市国电晋能售电有限公司, code P42040113310410)"),
            (USER_UNIT_REVIEW_PASSED, example_body("tc.UserUnitReviewPassed.xml"), "user unit RU2026110001 passed review"),
            (AGREEMENT_DRAFT_REVIEWED, example_body("mkt.AgreementDraftReviewed.json"),
             "marketing approved the draft of TA202612-RU2026110001: it goes for signing"),
            (TRIPARTITE_AGREEMENT_SIGNED, example_body("tc.TripartiteAgreementSigned.xml"),
             "agreement TA202612-RU2026110001 signed, effective 2026-12-01 (in 6 days)"),
            (USER_UNIT_REVIEW_PASSED, _second_user(example_body("tc.UserUnitReviewPassed.xml")),
             f"user unit {SCHEDULED_USER} passed review"),
            (AGREEMENT_DRAFT_REVIEWED, _second_draft(example_body("mkt.AgreementDraftReviewed.json")),
             f"marketing approved the draft of TA202612-{SCHEDULED_USER}"),
            (TRIPARTITE_AGREEMENT_SIGNED, _second_signing(example_body("tc.TripartiteAgreementSigned.xml")),
             f"agreement TA202612-{SCHEDULED_USER} signed, effective 2027-01-05 (in 41 days)"),
        ]
        ok = True
        for route, body, note in story:  # one at a time: each step of the process needs the one before
            publish_as_source(broker_url, passwords, route, body, str(uuid.uuid4()), settings.source_user_names())
            settled += 1
            ok &= wait_settled(worker, settled, echo, timeout_s=30)
            echo(f"  published  {route.name:<34} {note}")
        clock.now = START + timedelta(days=27)
        echo(f"  the clock moves on 27 days to {clock.now.isoformat()}: the ownership schedule falls due")
        settled += 1
        ok &= wait_settled(worker, settled, echo, timeout_s=30)
        worker.stop()
        thread.join(10)
        inbox, events, dead = collect(broker_url, routes, events_tap)
        trace = store.journal.trace(SCHEDULED_USER)
        store.close()
        return _report(echo, worker.counts, stub, inbox, events, dead, trace) and ok


def _edit(body: bytes, values: dict[str, str | None]) -> bytes:
    root = etree.fromstring(body, _SAFE_PARSER)
    namespace = etree.QName(root).namespace
    for name, text in values.items():
        element = root.find(f"{{{namespace}}}{name}")
        if text is None:
            root.remove(element)
        else:
            element.text = text
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _fig9_row1(body: bytes) -> bytes:
    return _edit(body, {
        "ArchiveId": "FIG9-01", "ArchiveRevision": "1", "CreditCode": "P42040113310410",
        "Name": "太原市国电晋能售电有限公司", "ShortName": "太原国电", "Address": "太原市迎泽区长风街10号",
        "RegistrationPlace": "太原", "EstablishedOn": "2016-12-09", "EffectiveDate": "2017-05-15",
        "LegalRepresentative": None,  # 无: none given
    })


def _second_user(body: bytes) -> bytes:
    return _edit(body, {"UserUnitId": SCHEDULED_USER, "CustomerNo": "0731000012346"})


def _second_draft(body: bytes) -> bytes:
    document = json.loads(body)
    document.update(agreement_no=f"TA202612-{SCHEDULED_USER}", user_unit_id=SCHEDULED_USER)
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _second_signing(body: bytes) -> bytes:
    return _edit(body, {
        "AgreementNo": f"TA202612-{SCHEDULED_USER}", "UserUnitId": SCHEDULED_USER,
        "EffectiveTime": "2027-01-05T00:00:00+08:00",
    })


def _report(echo, counts, stub, inbox, events, dead, trace) -> bool:
    echo("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    echo("trading center (SOAP) applied:")
    for call in stub.effects():
        subject = call.payload.get("UserUnitId") or call.payload.get("ArchiveId")
        decision = call.payload.get("Decision") or ""
        echo(f"  {call.operation:<26} {subject} {decision}")
    feedback = {c.payload["ArchiveId"]: c for c in stub.effects("ReceiveArchiveFeedback")}
    rejected = feedback.get("FIG9-01")
    if rejected is not None:
        for reason in _reasons(rejected):
            echo(f"    FIG9-01 [{reason['Code']}] {reason['Field']}: {reason['Message']}")
    echo("marketing inbox (AMQP):")
    for m in inbox:
        echo(f"  {m.properties.get('type')}: {m.body.decode('utf-8')[:110]}")
    echo("canonical events: " + ", ".join(sorted({m.delivery_info.get('routing_key') for m in events})))
    echo(f"trace of user unit {SCHEDULED_USER} (gridbus trace {SCHEDULED_USER}):")
    for at, event, route, _message_id, detail in trace:
        echo(f"  {datetime.fromtimestamp(at, CHINA_TZ).isoformat(timespec='minutes')}  {event:<11} {route:<34} {detail[:90]}")
    relations = {c.payload.get("UserUnitId") for c in stub.effects("ReceiveOwnershipRelation")}
    billing = [m for m in inbox if m.properties.get("type") == "BillingSchemeAdjustment"]
    events_in_trace = [event for _, event, *_ in trace]
    checks = {
        "the archive accepted, the Fig. 9 archive rejected for its credit code": (
            feedback.get("SCA-2026-000317") is not None
            and feedback["SCA-2026-000317"].payload["Decision"] == "accepted"
            and rejected is not None
            and any(r["Code"] == "credit-code-length" for r in _reasons(rejected))
        ),
        "agreement drafted and sent for both user units": len(stub.effects("ReceiveAgreementInfo")) == 2
        and sum(m.properties.get("type") == "AgreementDraftRequested" for m in inbox) == 2,
        "ownership of both user units established, the second once its schedule fell due": relations
        == {"RU2026110001", SCHEDULED_USER},
        "only large-industrial and general commercial/industrial points converted": len(billing) == 2
        and all(b'"residential"' not in m.body for m in billing),
        "the trace shows the schedule set and fired": "scheduled" in events_in_trace and "fired" in events_in_trace,
        "no dead letters": not dead,
    }
    echo("checks:")
    for name, ok in checks.items():
        echo(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return all(checks.values())


def _reasons(call) -> list[dict]:
    listed = call.payload.get("Reasons") or {}
    entries = listed.get("Reason", []) if isinstance(listed, dict) else listed
    return entries if isinstance(entries, list) else [entries]
