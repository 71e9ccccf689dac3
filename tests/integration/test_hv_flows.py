"""The four high-voltage new-installation flows end to end: pika publishers as the upstream
systems, the real RabbitMQ, the worker, the command center's SOAP stub over HTTP, marketing's
inbox and the canonical events exchange."""

from __future__ import annotations

import json
from datetime import datetime
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from kombu import Connection, Queue

from gridbus.adapters.soap import SoapAdapter
from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.soap import peer_wsdl
from gridbus.contracts import categories, naming
from gridbus.routes.hv_install import (
    BLACK_MAP_PUBLISHED,
    ENERGIZATION_COMPLETED,
    ENERGIZATION_TIME_SET,
    OUTAGE_PLANNED,
    PLAN_CHANGED,
    PROJECT_CREATED,
    SUPPLY_PLAN_PUSHED,
)
from gridbus.routes.model import RetryPolicy
from tests.support.amqp import QueueReader, UpstreamSystem, dead_letter_reader, inbox_reader, running_worker, wait_for
from gridbus.workers import headers as H

pytestmark = pytest.mark.broker

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"
FAST = RetryPolicy(attempts=6, first_delay_s=0.3, max_delay_s=1.0)
ROUTES = tuple(replace(r, retry=FAST) for r in (
    SUPPLY_PLAN_PUSHED, ENERGIZATION_TIME_SET, BLACK_MAP_PUBLISHED, PLAN_CHANGED,
    PROJECT_CREATED, OUTAGE_PLANNED, ENERGIZATION_COMPLETED))
SUPPLY, ENERGIZATION, BLACK_MAP, PLAN, PROJECT, OUTAGE, COMPLETED = ROUTES


@pytest.fixture
def stub():
    with SoapStub(peer_wsdl("cmd"), path="/cmd") as s:
        yield s


@pytest.fixture
def events_tap(broker_url):
    """A queue bound to every canonical event, as a consuming adapter would have."""
    name = f"test.events.{uuid.uuid4().hex[:8]}"
    with Connection(broker_url) as conn:
        channel = conn.channel()
        channel.exchange_declare(naming.EVENTS_EXCHANGE, "topic", durable=True, auto_delete=False)
        Queue(name, durable=True)(channel).declare()
        channel.queue_bind(name, naming.EVENTS_EXCHANGE, "#")
    return QueueReader(broker_url, name)


@pytest.fixture
def systems(vhost, system_users):
    opened = {s: UpstreamSystem(vhost, *system_users[s]) for s in ("mkt", "pms", "cmd")}
    yield opened
    for system in opened.values():
        system.close()


def worker_for(broker_url, store, stub):
    cmd = SoapAdapter("cmd", peer_wsdl("cmd"), stub.url, timeout_s=5)
    return running_worker(ROUTES, broker_url, store, {"cmd": cmd})


def publish(systems, route, body: bytes, **kwargs) -> str:
    system = systems[route.source.system]
    content_type = "application/json" if body.lstrip().startswith(b"{") else "application/xml"
    return system.publish(route.source.exchange, route.source.routing_key, body,
                          message_type=route.contract.message_type, content_type=content_type, **kwargs)


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def unique_application(body: bytes, application_no: str) -> bytes:
    return body.replace(b"HV2026110300017", application_no.encode())


def energization(application_no: str, revision: int) -> bytes:
    doc = json.loads(example("mkt.EnergizationTimeSet.json"))
    doc.update(application_no=application_no, revision=revision,
               intended_energization_time=f"2026-12-{10 + revision:02d}T09:30:00+08:00")
    return json.dumps(doc).encode()


def events_for(tap, correlation_id):
    return tap.where(lambda m: m.properties.get("correlation_id") == correlation_id)


def test_supply_plan_published_three_times_has_one_effect_and_one_event(broker_url, store, stub, systems, events_tap):
    body = example("mkt.SupplyPlanPushed.json")
    message_id = str(uuid.uuid4())
    with worker_for(broker_url, store, stub) as worker:
        for _ in range(3):
            publish(systems, SUPPLY, body, message_id=message_id, correlation_id=message_id)
        wait_for(lambda: worker.counts.get("delivered", 0) + worker.counts.get("duplicate", 0) == 3, what="3 outcomes")
    applied = [c for c in stub.calls if c.applied]
    assert len(applied) == 1
    assert applied[0].payload["ApplicationNo"] == "HV2026110300017"
    assert applied[0].payload["CustomerName"]  # Chinese text made it through SOAP
    events = events_for(events_tap, message_id)
    assert [e.delivery_info["routing_key"] for e in events] == ["SupplyPlan.created"]
    assert b"http://iec.ch/TC57/2011/schema/message" in events[0].body


def test_energization_revisions_1_3_2_reach_the_command_center_as_1_and_3(broker_url, store, stub, systems):
    application = f"HV{uuid.uuid4().int % 10**13:013d}"
    with worker_for(broker_url, store, stub) as worker:
        for n, revision in enumerate((1, 3, 2), start=1):
            publish(systems, ENERGIZATION, energization(application, revision))
            wait_for(lambda: sum(worker.counts.values()) == n, what=f"revision {revision} settled")
        assert worker.counts == {"delivered": 2, "superseded": 1}
    revisions = [c.payload["Revision"] for c in stub.effects("ReceiveEnergizationTime")
                 if c.payload["ApplicationNo"] == application]
    assert [int(r) for r in revisions] == [1, 3]


def test_command_center_down_for_a_while_then_everything_delivered_once(broker_url, store, stub, systems):
    stub.fail_for(2.0, "http503")
    applications = [f"HV{uuid.uuid4().int % 10**13:013d}" for _ in range(10)]
    with worker_for(broker_url, store, stub) as worker:
        ids = [publish(systems, SUPPLY, unique_application(example("mkt.SupplyPlanPushed.json"), a)) for a in applications]
        wait_for(lambda: worker.counts.get("delivered", 0) == 10, timeout=30, what="all delivered after the outage")
        assert worker.counts.get("retry-scheduled", 0) >= 1
        assert worker.counts.get("dead-lettered", 0) == 0
    applied = sorted(c.payload["ApplicationNo"] for c in stub.calls if c.applied)
    assert applied == sorted(applications)
    assert [m for m in dead_letter_reader(broker_url, SUPPLY).drain() if m.properties["message_id"] in ids] == []


def test_soap_client_fault_is_dead_lettered_at_once_with_the_fault(broker_url, store, stub, systems):
    stub.fail_next(1, "soap_client_fault")
    with worker_for(broker_url, store, stub) as worker:
        message_id = publish(systems, SUPPLY, example("mkt.SupplyPlanPushed.json"))
        wait_for(lambda: worker.counts.get("dead-lettered") == 1, what="dead letter")
    [dead] = dead_letter_reader(broker_url, SUPPLY).where(lambda m: m.properties["message_id"] == message_id)
    assert dead.headers[H.ERROR_TYPE] == "delivery-refused"
    assert "ReceiveSupplyPlan" in dead.headers[H.ERROR_MESSAGE]
    assert dead.body == example("mkt.SupplyPlanPushed.json")


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE BlackMapPublished [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<BlackMapPublished xmlns="urn:gridbus:pms:black-map:1"><ApplicationNo>&x;</ApplicationNo></BlackMapPublished>"""
LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<BlackMapPublished xmlns="urn:gridbus:pms:black-map:1"><ApplicationNo>&lol3;</ApplicationNo></BlackMapPublished>"""


def bad_black_maps() -> dict[str, tuple[bytes, str]]:
    good = example("pms.BlackMapPublished.xml")
    gbk = example("pms.BlackMapPublished.gbk.xml")
    return {
        "malformed": (good[: len(good) // 2], "malformed"),
        "wrong-namespace": (good.replace(b"black-map:1", b"black-map:2"), "version 1"),
        "missing-field": (good.replace(b"<Reviewer>", b"<!-- --><Reviewer>").replace(
            good[good.index(b"<GraphId>"): good.index(b"</GraphId>") + len(b"</GraphId>")], b""), "GraphId"),
        "encoding-lie": (gbk.replace(b'encoding="GBK"', b'encoding="UTF-8"'), "UTF-8"),
        "xxe": (XXE, "DOCTYPE"),
        "entity-expansion": (LAUGHS, "DOCTYPE"),
        "oversized": (good.replace(b"<Reviewer>", b"<!--" + b"x" * (1024 * 1024) + b"--><Reviewer>"), "exceeds"),
    }


def test_bad_black_maps_are_dead_lettered_with_reasons_and_good_ones_flow(broker_url, store, stub, systems):
    cases = bad_black_maps()
    inbox = inbox_reader(broker_url)
    correlation = str(uuid.uuid4())
    with worker_for(broker_url, store, stub) as worker:
        ids = {}
        for name, (body, _) in cases.items():
            ids[name] = publish(systems, BLACK_MAP, body)
            good = unique_application(example("pms.BlackMapPublished.gbk.xml"), f"HV{uuid.uuid4().int % 10**13:013d}")
            publish(systems, BLACK_MAP, good, correlation_id=correlation)
        wait_for(lambda: worker.counts.get("dead-lettered", 0) == len(cases), what="bad ones dead-lettered")
        wait_for(lambda: worker.counts.get("delivered", 0) == len(cases), what="good ones delivered")
    dead = {m.properties["message_id"]: m for m in dead_letter_reader(broker_url, BLACK_MAP).drain()}
    for name, (body, says) in cases.items():
        letter = dead[ids[name]]
        assert letter.headers[H.ERROR_TYPE] == "contract-violation", name
        assert says.lower() in letter.headers[H.ERROR_MESSAGE].lower(), (name, letter.headers[H.ERROR_MESSAGE])
        assert letter.body == body, name
    notices = inbox.where(lambda m: m.properties.get("correlation_id") == correlation)
    assert len(notices) == len(cases)
    notice = json.loads(notices[0].body)
    assert notice["substation"] == "杭州110kV文一变"  # GBK in, UTF-8 JSON out, Chinese intact


def test_a_gbk_body_labelled_with_its_content_encoding_is_read_as_the_bytes_sent(broker_url, store, stub, systems):
    """AMQP's content_encoding names how the body is encoded; the XML declaration is what counts.
    The worker takes the bytes as sent (no client-side decoding), so the GBK document is read
    as GBK, Chinese intact."""
    inbox = inbox_reader(broker_url)
    correlation = str(uuid.uuid4())
    with worker_for(broker_url, store, stub) as worker:
        publish(systems, BLACK_MAP, example("pms.BlackMapPublished.gbk.xml"), correlation_id=correlation,
                content_encoding="gbk")
        wait_for(lambda: worker.counts.get("delivered") == 1, what="delivered")
    [notice] = inbox.where(lambda m: m.properties.get("correlation_id") == correlation)
    assert json.loads(notice.body)["substation"] == "杭州110kV文一变"


def test_plan_change_reaches_marketing_and_the_events_exchange(broker_url, store, stub, systems, events_tap):
    inbox = inbox_reader(broker_url)
    with worker_for(broker_url, store, stub) as worker:
        message_id = publish(systems, PLAN, example("cmd.PlanChanged.xml"), correlation_id="plan-corr")
        wait_for(lambda: worker.counts.get("delivered") == 1, what="delivered")
    [notice] = inbox.where(lambda m: m.properties.get("correlation_id") == "plan-corr")
    assert notice.properties["type"] == "PlanChangeNotice"
    assert json.loads(notice.body)["plan_revision"] >= 1
    [event] = events_for(events_tap, "plan-corr")
    assert event.delivery_info["routing_key"] == "SupplyPlan.changed"
    assert message_id not in (notice.properties["message_id"], event.properties["message_id"])


def test_replay_after_the_cause_is_fixed_delivers_once(broker_url, store, stub, systems):
    from gridbus.tools import dlq

    stub.fail_when(lambda payload: True, "soap_client_fault")  # the command center refuses everything
    application = f"HV{uuid.uuid4().int % 10**13:013d}"
    body = unique_application(example("mkt.SupplyPlanPushed.json"), application)
    with worker_for(broker_url, store, stub) as worker:
        message_id = publish(systems, SUPPLY, body)
        wait_for(lambda: worker.counts.get("dead-lettered") == 1, what="dead letter")
        assert [c for c in stub.calls if c.applied] == []
        stub.clear_faults()  # the cause is fixed
        result = dlq.replay(broker_url, ROUTES, ids=[message_id])
        assert len(result.replayed) == 1
        wait_for(lambda: worker.counts.get("delivered") == 1, what="delivered after replay")
        # A second replay finds nothing: the dead letter was moved, not copied.
        again = dlq.replay(broker_url, ROUTES, ids=[message_id])
        assert again.replayed == [] and message_id in again.ids_not_found
    applied = [c for c in stub.calls if c.applied and c.payload["ApplicationNo"] == application]
    assert len(applied) == 1
    assert dlq.show(broker_url, ROUTES, message_id=message_id) == []


def supply_plan(application_no: str, revision: int) -> bytes:
    doc = json.loads(example("mkt.SupplyPlanPushed.json"))
    doc.update(application_no=application_no, plan_revision=revision)
    return json.dumps(doc, ensure_ascii=False).encode()


def test_a_late_older_plan_is_superseded_and_a_held_energization_time_wins_over_a_plan_s(broker_url, store, stub, systems):
    """Flow 1 is superseded by plan_revision; once flow 2 has set a time, a later plan carries
    that time to the command center, not the one in its own body (README: which time wins)."""
    application = f"HV{uuid.uuid4().int % 10**13:013d}"
    sent = [
        (SUPPLY, supply_plan(application, 2)),
        (SUPPLY, supply_plan(application, 1)),  # late, older
        (ENERGIZATION, energization(application, 4)),  # 2026-12-14T09:30+08:00
        (SUPPLY, supply_plan(application, 3)),  # its body says 2026-12-15T09:00+08:00
    ]
    with worker_for(broker_url, store, stub) as worker:
        for n, (route, body) in enumerate(sent, start=1):
            publish(systems, route, body)
            wait_for(lambda: sum(worker.counts.values()) == n, what=f"message {n} settled")
        assert worker.counts == {"delivered": 3, "superseded": 1}
    plans = [c.payload for c in stub.effects("ReceiveSupplyPlan") if c.payload["ApplicationNo"] == application]
    assert [int(p["PlanRevision"]) for p in plans] == [2, 3]
    times = [datetime.fromisoformat(str(p["IntendedEnergizationTime"])) for p in plans]
    assert times == [datetime.fromisoformat("2026-12-15T09:00:00+08:00"), datetime.fromisoformat("2026-12-14T09:30:00+08:00")]


def with_categories(application_no: str, *codes: str) -> bytes:
    doc = json.loads(example("mkt.SupplyPlanPushed.json"))
    point = doc["metering_plan"]["metering_points"][0]
    doc["application_no"] = application_no
    doc["metering_plan"]["metering_points"] = [
        {**point, "metering_point_id": f"{application_no[2:]}{n}", "category": code} for n, code in enumerate(codes)]
    return json.dumps(doc, ensure_ascii=False).encode()


def test_contract_and_event_agree_on_categories_so_a_plan_the_command_center_took_is_not_dead_lettered(
        broker_url, store, stub, systems, events_tap):
    """Every category in the code table reaches the command center and the events exchange; one
    outside it is refused at the door, before the command center is called."""
    accepted, refused = f"HV{uuid.uuid4().int % 10**13:013d}", f"HV{uuid.uuid4().int % 10**13:013d}"
    with worker_for(broker_url, store, stub) as worker:
        good = publish(systems, SUPPLY, with_categories(accepted, *categories.CODES))
        bad = publish(systems, SUPPLY, with_categories(refused, "large_industrial", "street_lighting"))
        wait_for(lambda: sum(worker.counts.values()) == 2, what="both settled")
        assert worker.counts == {"delivered": 1, "dead-lettered": 1}
    [plan] = [c.payload for c in stub.effects("ReceiveSupplyPlan") if c.payload["ApplicationNo"] == accepted]
    assert [p["Category"] for p in plan["MeteringPlan"]["MeteringPoint"]] == list(categories.CODES)
    assert not [c for c in stub.calls if c.payload.get("ApplicationNo") == refused]
    [event] = events_for(events_tap, good)
    assert event.body.count(b"<meteringCategory>") == len(categories.CODES)
    [dead] = dead_letter_reader(broker_url, SUPPLY).where(lambda m: m.properties["message_id"] == bad)
    assert dead.headers[H.ERROR_TYPE] == "contract-violation"
    assert "metering_points[1].category" in dead.headers[H.ERROR_MESSAGE]


def black_map_of(application_no: str, graph_version: int, plan_revision: int) -> bytes:
    body = unique_application(example("pms.BlackMapPublished.xml"), application_no)
    return (body.replace(b"<GraphVersion>3<", f"<GraphVersion>{graph_version}<".encode())
                .replace(b"<PlanRevision>2<", f"<PlanRevision>{plan_revision}<".encode()))


def test_black_maps_are_superseded_by_graph_version_and_a_stale_one_holds_energization(broker_url, store, stub, systems):
    application = f"HV{uuid.uuid4().int % 10**13:013d}"
    inbox = inbox_reader(broker_url)
    with worker_for(broker_url, store, stub) as worker:
        publish(systems, SUPPLY, supply_plan(application, 2))
        wait_for(lambda: worker.counts.get("delivered") == 1, what="plan revision 2 held")
        for n, body in enumerate((black_map_of(application, 4, 1),  # drawn from plan revision 1
                                  black_map_of(application, 3, 2),  # late, older graph version
                                  black_map_of(application, 5, 2)), start=2):
            publish(systems, BLACK_MAP, body)
            wait_for(lambda: sum(worker.counts.values()) == n, what=f"black map {n - 1} settled")
        assert worker.counts == {"delivered": 3, "superseded": 1}
    notices = [json.loads(m.body) for m in inbox.where(lambda m: m.properties.get("type") == "BlackMapNotice")]
    mine = [(n["graph_version"], n["plan_revision"], n["may_energize"], n["hold_reason"])
            for n in notices if n["application_no"] == application]
    assert mine == [
        (4, 1, False, "the black map realises plan revision 1, but plan revision 2 (marketing's supply plan) is newer"),
        (5, 2, True, None),
    ]


def plan_change_of(application_no: str, revision: int) -> bytes:
    body = unique_application(example("cmd.PlanChanged.xml"), application_no)
    return body.replace(b"<PlanRevision>2<", f"<PlanRevision>{revision}<".encode())


def test_a_plan_change_out_of_sequence_is_dead_lettered_with_the_revision_held_and_the_next_one_flows(
        broker_url, store, stub, systems):
    application = f"HV{uuid.uuid4().int % 10**13:013d}"
    inbox = inbox_reader(broker_url)
    with worker_for(broker_url, store, stub) as worker:
        publish(systems, SUPPLY, supply_plan(application, 1))
        wait_for(lambda: worker.counts.get("delivered") == 1, what="plan revision 1 held")
        skipped = publish(systems, PLAN, plan_change_of(application, 3))
        wait_for(lambda: worker.counts.get("dead-lettered") == 1, what="revision 3 refused")
        publish(systems, PLAN, plan_change_of(application, 2))
        wait_for(lambda: worker.counts.get("delivered") == 2, what="revision 2 delivered")
    [dead] = dead_letter_reader(broker_url, PLAN).where(lambda m: m.properties["message_id"] == skipped)
    assert dead.headers[H.ERROR_TYPE] == "out-of-sequence"
    assert f"plan change {application} revision 3 from the command center does not follow plan revision 1" in (
        dead.headers[H.ERROR_MESSAGE])
    notices = [json.loads(m.body) for m in inbox.where(lambda m: m.properties.get("type") == "PlanChangeNotice")]
    assert [n["plan_revision"] for n in notices if n["application_no"] == application] == [2]



def test_project_numbers_and_outage_reach_marketing_and_energization_done_reaches_cmd_and_pms(
        broker_url, store, stub, systems):
    """The rest of seed 003's Fig. 4: 工程编号/创建异动 and 检修计划 to marketing (a moved window
    supersedes the first, a late older one does not reach marketing), 送电完成 to both."""
    application = f"HV{uuid.uuid4().int % 10**13:013d}"
    outage_no = f"JX-{application}"
    outage = unique_application(example("cmd.OutagePlanned.xml"), application).replace(
        b"JX-330106-20261210-003", outage_no.encode())
    moved = outage.replace(b"<Revision>1<", b"<Revision>2<").replace(b"T08:00:00", b"T13:00:00").replace(
        b"T12:00:00", b"T17:00:00")
    completed = json.loads(example("mkt.EnergizationCompleted.json"))
    completed.update(application_no=application, outage_plan_no=outage_no)
    mkt_inbox, pms_inbox = inbox_reader(broker_url), inbox_reader(broker_url, "pms")
    sent = [(PROJECT, unique_application(example("pms.ProjectCreated.xml"), application)),
            (OUTAGE, outage), (OUTAGE, moved), (OUTAGE, outage),  # the first window again, late
            (COMPLETED, json.dumps(completed).encode())]
    with worker_for(broker_url, store, stub) as worker:
        for n, (route, body) in enumerate(sent, start=1):
            publish(systems, route, body)
            wait_for(lambda: sum(worker.counts.values()) == n, what=f"message {n} settled")
        assert worker.counts == {"delivered": 4, "superseded": 1}
    notices = [(m.properties["type"], json.loads(m.body)) for m in mkt_inbox.drain()]
    mine = [(kind, n.get("project_no") or n.get("revision")) for kind, n in notices if n["application_no"] == application]
    assert mine == [("ProjectNotice", "GC-330106-2026-0318"), ("OutagePlanNotice", 1), ("OutagePlanNotice", 2)]
    [call] = [c for c in stub.effects("ReceiveEnergizationCompleted") if c.payload["ApplicationNo"] == application]
    assert (call.payload["OutagePlanNo"], int(call.payload["GraphVersion"])) == (outage_no, 3)
    assert datetime.fromisoformat(str(call.payload["EnergizedAt"])) == datetime.fromisoformat("2026-12-10T10:42:00+08:00")
    [to_pms] = [m for m in pms_inbox.drain() if application.encode() in m.body]
    assert to_pms.properties["type"] == "EnergizationCompleted"
    assert to_pms.properties["content_type"] == "application/xml"
    assert b"urn:gridbus:pms:energization-completed:1" in to_pms.body and outage_no.encode() in to_pms.body
