"""Each mapping turns its example message into the expected output (tests/unit/expected/)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import zeep
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gridbus.contracts import xml
from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent
from gridbus.contracts.canonical.envelope import SCHEMA as ENVELOPE_SCHEMA
from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.mkt import EnergizationCompleted, EnergizationTimeSet, SupplyPlanPushed
from gridbus.contracts.cmd.outage import OutagePlanned
from gridbus.contracts.pms import BlackMapPublished, ProjectCreated
from gridbus.contracts.pms.energization import SCHEMA as PMS_ENERGIZATION_SCHEMA
from gridbus.mappings import cmd_to_mkt, events, mkt_to_cmd, mkt_to_pms, pms_to_mkt
from gridbus.contracts.errors import ContractViolation, MappingError
from gridbus.contracts import categories
from gridbus.contracts.categories import MarketEligibility
from gridbus.contracts.rules import Rules

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "contracts" / "examples"
EXPECTED = Path(__file__).parent / "expected"
WSDL = ROOT / "contracts" / "cmd" / "CommandCenterService.wsdl"

NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))


def context(source_system: str = "mkt") -> MappingContext:
    return MappingContext(
        route="test.route",
        step="step",
        message_id="gb-0001-step",
        correlation_id="HV2026110300017",
        source_message_id="src-0001",
        source_system=source_system,
        now=NOW,
        decision=MAY_ENERGIZE if source_system == "pms" else {},
    )


#: The black-map route's decision when the graph realises the latest plan revision.
MAY_ENERGIZE = {"may_energize": True, "hold_reason": None}


def supply_plan() -> SupplyPlanPushed:
    return SupplyPlanPushed.decode((EXAMPLES / "mkt.SupplyPlanPushed.json").read_bytes())


def energization_time() -> EnergizationTimeSet:
    return EnergizationTimeSet.decode((EXAMPLES / "mkt.EnergizationTimeSet.json").read_bytes())


def black_map() -> BlackMapPublished:
    return BlackMapPublished.decode((EXAMPLES / "pms.BlackMapPublished.xml").read_bytes())


def energization_completed() -> EnergizationCompleted:
    return EnergizationCompleted.decode((EXAMPLES / "mkt.EnergizationCompleted.json").read_bytes())


def plan_changed() -> PlanChanged:
    return PlanChanged.decode((EXAMPLES / "cmd.PlanChanged.xml").read_bytes())


def plain(value):
    """zeep keyword arguments as JSON-comparable data (types are checked separately)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def expected_json(name: str):
    return json.loads((EXPECTED / name).read_text(encoding="utf-8"))


def canonical_xml(data: bytes) -> bytes:
    return etree.tostring(xml.parse_xml(data), method="c14n")


# ---------------------------------------------------------------- mkt -> cmd (SOAP)


def test_supply_plan_to_command_center():
    request = mkt_to_cmd.supply_plan(supply_plan(), context())
    assert request.operation == "ReceiveSupplyPlan"
    assert plain(request.to_soap()) == expected_json("mkt_to_cmd.supply_plan.json")


def test_supply_plan_soap_arguments_have_soap_types():
    arguments = mkt_to_cmd.supply_plan(supply_plan(), context()).to_soap()
    assert arguments["MessageID"] == "gb-0001-step" and arguments["CorrelationID"] == "HV2026110300017"
    assert arguments["SentAt"] == NOW and arguments["SentAt"].tzinfo is not None
    assert isinstance(arguments["SupplyVoltageKV"], Decimal)
    assert isinstance(arguments["ContractCapacityKVA"], Decimal)
    assert arguments["IntendedEnergizationTime"].tzinfo is not None
    point = arguments["MeteringPlan"]["MeteringPoint"][1]
    assert point["VoltageKV"] == Decimal("0.4") and type(point["CTRatio"]) is int and type(point["PTRatio"]) is int
    assert isinstance(arguments["CustomerEquipmentPlan"]["Transformer"][0]["CapacityKVA"], Decimal)


def test_energization_time_to_command_center():
    request = mkt_to_cmd.energization_time(energization_time(), context())
    assert request.operation == "ReceiveEnergizationTime"
    assert request.message_id == "gb-0001-step"
    assert plain(request.to_soap()) == expected_json("mkt_to_cmd.energization_time.json")


@pytest.fixture(scope="module")
def cmd_client():
    return zeep.Client(str(WSDL))


@pytest.mark.parametrize(
    "mapping,message,element",
    [
        (mkt_to_cmd.supply_plan, supply_plan, "ReceiveSupplyPlanRequest"),
        (mkt_to_cmd.energization_time, energization_time, "ReceiveEnergizationTimeRequest"),
        (mkt_to_cmd.energization_completed, energization_completed, "ReceiveEnergizationCompletedRequest"),
    ],
)
def test_soap_requests_fit_the_wsdl(cmd_client, mapping, message, element):
    """zeep builds the envelope from our keyword arguments (no network): names and types match."""
    request = mapping(message(), context())
    envelope = cmd_client.create_message(cmd_client.service, request.operation, **request.to_soap())
    body = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    wrapper = body[0]
    assert wrapper.tag == f"{{urn:gridbus:cmd:service:1}}{element}"
    assert wrapper.findtext("{urn:gridbus:cmd:service:1}MessageID") == "gb-0001-step"
    assert wrapper.findtext("{urn:gridbus:cmd:service:1}SentAt") == "2026-12-08T17:00:00+08:00"


def test_supply_plan_envelope_carries_chinese_and_decimals(cmd_client):
    request = mkt_to_cmd.supply_plan(supply_plan(), context())
    envelope = cmd_client.create_message(cmd_client.service, request.operation, **request.to_soap())
    ns = {"c": "urn:gridbus:cmd:service:1"}
    assert envelope.xpath("//c:SupplyPoint[1]/c:Substation/text()", namespaces=ns) == ["杭州110kV文一变"]
    assert envelope.xpath("//c:MeteringPoint[2]/c:VoltageKV/text()", namespaces=ns) == ["0.4"]


# ---------------------------------------------------------------- pms -> mkt, cmd -> mkt (JSON)


def test_black_map_notice():
    notice = pms_to_mkt.black_map_notice(black_map(), context("pms"))
    assert notice.message_type == "BlackMapNotice" and notice.content_type == "application/json"
    assert json.loads(notice.encode()) == expected_json("pms_to_mkt.black_map_notice.json")


def test_a_black_map_notice_says_why_energization_is_held():
    held = {"may_energize": False, "hold_reason": "the black map realises plan revision 2, but plan revision 3 is newer"}
    notice = pms_to_mkt.black_map_notice(black_map(), replace(context("pms"), decision=held))
    assert (notice.plan_revision, notice.may_energize, notice.hold_reason) == (2, False, held["hold_reason"])


def test_plan_change_notice():
    notice = cmd_to_mkt.plan_change_notice(plan_changed(), context("cmd"))
    assert notice.message_type == "PlanChangeNotice"
    assert json.loads(notice.encode()) == expected_json("cmd_to_mkt.plan_change_notice.json")


def test_json_notices_are_utf8_without_escapes():
    body = pms_to_mkt.black_map_notice(black_map(), context("pms")).encode()
    assert "杭州110kV文一变".encode("utf-8") in body and b"\\u" not in body


# ---------------------------------------------------------------- canonical events


EVENT_CASES = [
    (events.supply_plan_created, supply_plan, "mkt", "SupplyPlan", "created", "events.supply_plan_created.xml"),
    (events.energization_time_changed, energization_time, "mkt", "EnergizationTime", "changed",
     "events.energization_time_changed.xml"),
    (events.black_map_created, black_map, "pms", "BlackMap", "created", "events.black_map_created.xml"),
    (events.plan_changed, plan_changed, "cmd", "SupplyPlan", "changed", "events.plan_changed.xml"),
]


@pytest.mark.parametrize("mapping,message,system,noun,verb,expected", EVENT_CASES, ids=lambda v: getattr(v, "__name__", v))
def test_events(mapping, message, system, noun, verb, expected):
    event = mapping(message(), context(system))
    assert isinstance(event, CanonicalEvent)
    assert (event.noun, event.verb, event.routing_key) == (noun, verb, f"{noun}.{verb}")
    assert event.message_type == noun and event.content_type == "application/xml"
    assert event.message_id == "gb-0001-step" and event.timestamp == NOW
    body = event.encode()
    xml.validate(xml.parse_xml(body), ENVELOPE_SCHEMA)
    assert canonical_xml(body) == canonical_xml((EXPECTED / expected).read_bytes())


@pytest.mark.parametrize("mapping,message,system,noun,verb,expected", EVENT_CASES, ids=lambda v: getattr(v, "__name__", v))
def test_events_carry_no_personal_data(mapping, message, system, noun, verb, expected):
    text = mapping(message(), context(system)).encode().decode("utf-8")
    for personal in ("杭州西溪精密机械有限公司", "13957112345", "91330106MA2KE8Q100", "王建国", "kh330106017", "dd330100208"):
        assert personal not in text


def test_every_category_the_contract_accepts_has_an_event_mapping():
    """One code table (contracts/categories.py) for contract and events: a plan the contract
    accepts cannot fail at the event step after the command center took it."""
    plan = supply_plan()
    point = plan.metering_plan.metering_points[0]
    for code in categories.CODES:
        one = plan.model_copy(update={"metering_plan": plan.metering_plan.model_copy(
            update={"metering_points": (point.model_copy(update={"category": code}),)})})
        xml_text = events.supply_plan_created(one, context()).encode().decode()
        assert f"<meteringCategory>{code}</meteringCategory>" in xml_text


def test_a_category_outside_the_table_is_refused_by_the_contract():
    doc = json.loads((EXAMPLES / "mkt.SupplyPlanPushed.json").read_bytes())
    doc["metering_plan"]["metering_points"][0]["category"] = "street_lighting"
    with pytest.raises(ContractViolation) as caught:
        SupplyPlanPushed.decode(json.dumps(doc, ensure_ascii=False).encode())
    assert "street_lighting" in caught.value.reason or "category" in caught.value.reason
    assert "large_industrial" in caught.value.reason


def test_market_eligibility_is_the_configured_rule():
    residential_only = Rules(market=MarketEligibility.of({"residential"}))
    default = events.supply_plan_created(supply_plan(), context()).encode().decode()
    configured = events.supply_plan_created(supply_plan(), replace(context(), rules=residential_only)).encode().decode()
    assert default.count("<marketEligible>true</marketEligible>") == 2
    assert configured.count("<marketEligible>true</marketEligible>") == 0


def test_mappings_are_pure():
    assert mkt_to_cmd.supply_plan(supply_plan(), context()) == mkt_to_cmd.supply_plan(supply_plan(), context())
    assert events.black_map_created(black_map(), context("pms")) == events.black_map_created(black_map(), context("pms"))


# ---------------------------------------------------------------- property-based


@settings(max_examples=60, deadline=None)
@given(
    revision=st.integers(min_value=1, max_value=2**31 - 1),
    offset_minutes=st.integers(min_value=-12 * 60, max_value=14 * 60),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
)
def test_energization_time_round_trip(revision, offset_minutes, when):
    aware = when.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    message = energization_time().model_copy(update={"revision": revision, "intended_energization_time": aware})
    arguments = mkt_to_cmd.energization_time(message, context()).to_soap()
    assert arguments["Revision"] == revision and arguments["IntendedEnergizationTime"] == aware
    event = events.energization_time_changed(message, context())
    xml.validate(xml.parse_xml(event.encode()), ENVELOPE_SCHEMA)


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=30), min_size=1, max_size=5
    )
)
def test_black_map_events_and_notices_carry_any_equipment_names(names):
    source = black_map()
    items = tuple(source.equipment[0].model_copy(update={"name": name}) for name in names)
    message = source.model_copy(update={"equipment": items})
    assert json.loads(pms_to_mkt.black_map_notice(message, context("pms")).encode())["equipment_count"] == len(names)
    payload = xml.parse_xml(events.black_map_created(message, context("pms")).encode())
    assert payload.xpath("//*[local-name()='Equipment']/*[local-name()='name']/text()") == names


def test_text_xml_cannot_carry_is_a_mapping_error_not_a_crash():
    source = black_map()
    message = source.model_copy(update={"equipment": (source.equipment[0].model_copy(update={"name": "a\ufffe"}),)})
    with pytest.raises(MappingError) as caught:
        events.black_map_created(message, context("pms"))
    assert "BlackMap.name" in caught.value.reason


_NAME = st.text(
    st.characters(whitelist_categories=("Lu", "Ll", "Lo", "Nd", "Zs", "Pd", "Po")), min_size=1, max_size=40
)
_DECIMAL = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("99999"), places=3)
_WHEN = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1)).map(
    lambda d: d.replace(microsecond=0).isoformat() + "+08:00"
)


@st.composite
def supply_plan_documents(draw) -> dict:
    return {
        "schema_version": "1",
        "application_no": "HV" + draw(st.from_regex(r"[0-9]{13}", fullmatch=True)),
        "customer": {"name": draw(_NAME), "contact_phone": draw(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))},
        "access_plan": {
            "supply_voltage_kv": str(draw(st.sampled_from(["0.4", "10", "20", "35", "110", "220"]))),
            "contract_capacity_kva": str(draw(_DECIMAL)),
            "supply_points": draw(st.lists(
                st.fixed_dictionaries({"substation": _NAME, "line": _NAME,
                                       "power_source": st.sampled_from(["main", "backup"])}),
                min_size=1, max_size=3,
            )),
        },
        "metering_plan": {"metering_points": draw(st.lists(
            st.fixed_dictionaries({
                "metering_point_id": st.from_regex(r"[0-9]{13}", fullmatch=True),
                "category": st.sampled_from(categories.CODES),
                "voltage_kv": st.sampled_from(["0.4", "10", "35"]),
                "ct_ratio": st.integers(1, 10_000),
                "pt_ratio": st.integers(1, 10_000),
            }),
            min_size=1, max_size=3,
        ))},
        "billing_plan": {"tariff_category": "large_industrial_two_part",
                         "max_demand_basis": draw(st.sampled_from(["capacity", "demand", "none"]))},
        "customer_equipment_plan": {"transformers": draw(st.lists(
            st.fixed_dictionaries({"model": _NAME, "capacity_kva": _DECIMAL.map(str)}), max_size=3
        ))},
        "intended_energization_time": draw(_WHEN),
        "plan_revision": draw(st.integers(1, 1000)),
        "surveyed_at": draw(_WHEN),
    }


@settings(max_examples=40, deadline=None)
@given(document=supply_plan_documents())
def test_any_valid_supply_plan_reaches_the_wsdl_and_the_event_schema(cmd_client, document):
    message = SupplyPlanPushed.decode(json.dumps(document, ensure_ascii=False).encode("utf-8"))
    request = mkt_to_cmd.supply_plan(message, context())
    cmd_client.create_message(cmd_client.service, request.operation, **request.to_soap())
    event = events.supply_plan_created(message, context())
    assert document["customer"]["contact_phone"] not in event.encode().decode("utf-8")
    xml.validate(xml.parse_xml(event.encode()), ENVELOPE_SCHEMA)



# ---------------------------------------------------------------- the rest of Fig. 4 (item 5)


def test_project_numbers_reach_marketing_without_the_pms_staff_id():
    message = ProjectCreated.decode((EXAMPLES / "pms.ProjectCreated.xml").read_bytes())
    body = pms_to_mkt.project_notice(message, context("pms")).encode()
    assert json.loads(body) == {
        "schema_version": "1", "application_no": "HV2026110300017", "project_no": "GC-330106-2026-0318",
        "change_order_no": "YD-330106-20261125-0007", "plan_revision": 2, "created_at": "2026-11-25T15:30:00+08:00",
        "substation": "杭州110kV文一变", "feeder": "10kV古墩线", "notified_at": "2026-12-08T17:00:00+08:00",
    }
    assert b"sc330100415" not in body


def test_the_outage_window_reaches_marketing():
    message = OutagePlanned.decode((EXAMPLES / "cmd.OutagePlanned.xml").read_bytes())
    notice = json.loads(cmd_to_mkt.outage_plan_notice(message, context("cmd")).encode())
    assert (notice["outage_plan_no"], notice["revision"], notice["start"], notice["end"]) == (
        "JX-330106-20261210-003", 1, "2026-12-10T08:00:00+08:00", "2026-12-10T12:00:00+08:00")
    assert "dd330100208" not in json.dumps(notice)


def test_energization_done_reaches_pms_as_schema_valid_xml():
    notice = mkt_to_pms.energization_completed(energization_completed(), context())
    root = xml.parse_xml(notice.encode())
    xml.validate(root, PMS_ENERGIZATION_SCHEMA)
    texts = {etree.QName(child).localname: child.text for child in root}
    assert texts == {
        "MessageID": "gb-0001-step", "ApplicationNo": "HV2026110300017", "ProjectNo": "GC-330106-2026-0318",
        "GraphId": "PMS-GR-330106-20261208-0042", "GraphVersion": "3", "OutagePlanNo": "JX-330106-20261210-003",
        "EnergizedAt": "2026-12-10T10:42:00+08:00", "NotifiedAt": "2026-12-08T17:00:00+08:00",
    }
    without_outage = energization_completed().model_copy(update={"outage_plan_no": None})
    xml.validate(xml.parse_xml(mkt_to_pms.energization_completed(without_outage, context()).encode()),
                 PMS_ENERGIZATION_SCHEMA)


def test_an_outage_that_ends_before_it_starts_is_refused():
    body = (EXAMPLES / "cmd.OutagePlanned.xml").read_bytes().replace(b"<End>2026-12-10T12:00", b"<End>2026-12-10T07:00")
    with pytest.raises(ContractViolation) as caught:
        OutagePlanned.decode(body)
    assert "End must be after Start" in caught.value.reason


def test_a_project_without_its_change_order_is_refused_by_the_schema():
    body = (EXAMPLES / "pms.ProjectCreated.xml").read_bytes()
    body = body.replace(b"  <ChangeOrderNo>YD-330106-20261125-0007</ChangeOrderNo>\n", b"")
    with pytest.raises(ContractViolation) as caught:
        ProjectCreated.decode(body)
    assert "project_created.v1.xsd" in caught.value.reason
