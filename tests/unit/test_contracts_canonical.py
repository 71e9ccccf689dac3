"""The IEC 61968-100 envelope and the outbound JSON notices."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree

from gridbus.contracts import xml
from gridbus.contracts.canonical import VERBS, CanonicalEvent, payload_namespace
from gridbus.contracts.canonical.envelope import NAMESPACE, SCHEMA
from gridbus.contracts.mkt import BlackMapNotice, PlanChange, PlanChangeNotice
from gridbus.contracts.errors import ContractViolation

NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))
M = f"{{{NAMESPACE}}}"


def payload(noun: str = "BlackMap") -> etree._Element:
    root = etree.Element(f"{{{payload_namespace(noun)}}}{noun}", nsmap={None: payload_namespace(noun)})
    etree.SubElement(root, f"{{{payload_namespace(noun)}}}mRID").text = "PMS-GR-1"
    return root


def event(**changes) -> CanonicalEvent:
    fields = dict(verb="created", noun="BlackMap", timestamp=NOW, message_id="m-1", correlation_id="c-1",
                  payload=payload())
    return CanonicalEvent(**(fields | changes))


def test_envelope_layout_and_header():
    body = event(comment="黑图发布", properties=(("sourceSystem", "pms"),)).encode()
    assert body.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = xml.parse_xml(body)
    xml.validate(root, SCHEMA)
    assert [etree.QName(child).localname for child in root] == ["Header", "Payload"]
    header = root.find(f"{M}Header")
    assert [etree.QName(child).localname for child in header] == [
        "Verb", "Noun", "Revision", "Timestamp", "Source", "MessageID", "CorrelationID", "Comment", "Property",
    ]
    assert header.findtext(f"{M}Timestamp") == "2026-12-08T17:00:00+08:00"
    assert header.findtext(f"{M}Source") == "gridbus" and header.findtext(f"{M}Revision") == "1.0"
    assert header.findtext(f"{M}Comment") == "黑图发布"
    assert header.find(f"{M}Property").findtext(f"{M}Value") == "pms"
    assert root.find(f"{M}Payload")[0].tag == "{urn:gridbus:canonical:BlackMap:1}BlackMap"


def test_routing_key_type_and_content_type():
    e = event(verb="changed", noun="SupplyPlan", payload=payload("SupplyPlan"))
    assert e.routing_key == "SupplyPlan.changed" and e.message_type == "SupplyPlan"
    assert e.content_type == "application/xml"


def test_payload_given_as_bytes_or_element_is_the_same_event():
    assert event() == event(payload=etree.tostring(payload()))


def test_comment_is_optional():
    header = xml.parse_xml(event().encode()).find(f"{M}Header")
    assert header.find(f"{M}Comment") is None


@pytest.mark.parametrize("verb", VERBS)
def test_every_61968_verb_is_valid(verb):
    xml.validate(xml.parse_xml(event(verb=verb).encode()), SCHEMA)


def test_unknown_verb_is_refused_by_the_model():
    with pytest.raises(ValueError, match="not an IEC 61968-100 verb"):
        event(verb="published")


def test_unknown_verb_is_refused_by_the_schema():
    body = event().encode().replace(b"<Verb>created</Verb>", b"<Verb>published</Verb>")
    with pytest.raises(ContractViolation, match="Header/Verb"):
        xml.validate(xml.parse_xml(body), SCHEMA)


@pytest.mark.parametrize("element", [b"<Verb>created</Verb>", b"<Noun>BlackMap</Noun>"])
def test_schema_requires_verb_and_noun(element):
    body = event().encode().replace(element, b"")
    with pytest.raises(ContractViolation, match="Header"):
        xml.validate(xml.parse_xml(body), SCHEMA)


def test_payload_must_be_in_the_nouns_namespace():
    with pytest.raises(ValueError, match="urn:gridbus:canonical:SupplyPlan:1"):
        event(noun="SupplyPlan")


def test_naive_timestamp_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        event(timestamp=datetime(2026, 12, 8, 17, 0))


# ---------------------------------------------------------------- JSON notices


def test_black_map_notice_encodes_compact_utf8_json():
    notice = BlackMapNotice(
        application_no="HV2026110300017", graph_id="G-1", graph_version=3, plan_revision=2, published_at=NOW,
        substation="杭州110kV文一变", feeder="10kV文三线", equipment_count=4, may_energize=True, notified_at=NOW,
    )
    body = notice.encode()
    assert "文一变".encode() in body
    assert json.loads(body) == {
        "schema_version": "1", "application_no": "HV2026110300017", "graph_id": "G-1", "graph_version": 3,
        "plan_revision": 2, "published_at": "2026-12-08T17:00:00+08:00", "substation": "杭州110kV文一变", "feeder": "10kV文三线",
        "equipment_count": 4, "may_energize": True, "hold_reason": None, "notified_at": "2026-12-08T17:00:00+08:00",
    }


def test_black_map_notice_says_whether_marketing_may_energize():
    with pytest.raises(ValueError):  # no default: the route's decision says it
        BlackMapNotice(
            application_no="HV1", graph_id="G", graph_version=1, plan_revision=1, published_at=NOW, substation="s",
            feeder="f", equipment_count=1, notified_at=NOW,
        )


def test_plan_change_notice_needs_aware_times():
    with pytest.raises(ValueError):
        PlanChangeNotice(
            application_no="HV1", plan_revision=2, changed_at=datetime(2026, 1, 1), change_reason="r",
            changes=(PlanChange(section="access", field="line", old_value="a", new_value="b"),), notified_at=NOW,
        )
