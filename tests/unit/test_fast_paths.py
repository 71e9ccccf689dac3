"""The cheap paths write exactly what the lxml/json paths write, and refuse exactly what they refuse."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gridbus.contracts import xml
from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import BuiltPayload, CanonicalEvent, PayloadBuilder, payload_namespace
from gridbus.contracts.canonical.payload import NOT_XML_CHARACTERS
from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.mkt import BlackMapNotice
from gridbus.contracts.pms import BlackMapPublished
from gridbus.mappings import cmd_to_mkt, events, pms_to_mkt
from gridbus.contracts.errors import ContractViolation, MappingError

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))
NS = payload_namespace("BlackMap")


def context(system: str = "pms", message_id: str = "gb-0001-step") -> MappingContext:
    return MappingContext(route="r", step="s", message_id=message_id, correlation_id="HV2026110300017",
                          source_message_id="src-1", source_system=system, now=NOW, decision=MAY_ENERGIZE)


#: The black-map route's decision when the graph realises the latest plan revision.
MAY_ENERGIZE = {"may_energize": True, "hold_reason": None}


def reference_encoding(event: CanonicalEvent) -> bytes:
    """The envelope as lxml writes it with the payload parsed into it (what encode() always wrote)."""
    return etree.tostring(event.to_element(), encoding="utf-8", xml_declaration=True)


def lxml_refuses(text: str) -> bool:
    try:
        etree.Element("a").text = text
    except ValueError:
        return True
    return False


def test_refused_characters_are_exactly_those_lxml_refuses():
    code_points = list(range(0x10000)) + list(range(0x10000, 0x110000, 97)) + [0x10FFFF]
    differ = [hex(cp) for cp in code_points if lxml_refuses("x" + chr(cp)) != bool(NOT_XML_CHARACTERS.search(chr(cp)))]
    assert differ == []


def test_text_and_attributes_are_escaped_as_lxml_escapes_them():
    text = "".join(chr(cp) for cp in range(0x10000) if not NOT_XML_CHARACTERS.search(chr(cp))) + "\U0001f600"
    builder = PayloadBuilder("BlackMap", NS)
    builder.add(builder.root, "name", {"unit": text}, "x" + text)
    element = builder.element()
    assert builder.build().data == etree.tostring(element, encoding="utf-8")


@pytest.mark.parametrize("example,mapping,system", [
    ("pms.BlackMapPublished.xml", events.black_map_created, "pms"),
    ("pms.BlackMapPublished.gbk.xml", events.black_map_created, "pms"),
    ("cmd.PlanChanged.xml", events.plan_changed, "cmd"),
])
def test_events_of_the_examples_are_byte_identical_to_the_lxml_envelope(example, mapping, system):
    contract = BlackMapPublished if example.startswith("pms") else PlanChanged
    event = mapping(contract.decode((EXAMPLES / example).read_bytes()), context(system))
    assert event._body is not None  # the spliced path is the one measured
    assert event.encode() == reference_encoding(event)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@settings(max_examples=200, deadline=None)
@given(names=st.lists(_TEXT, min_size=1, max_size=4), message_id=_TEXT, comment=st.none() | _TEXT)
def test_any_text_gives_the_lxml_bytes_or_the_lxml_refusal(names, message_id, comment):
    """Whitespace-only, empty, escaped and refused values included."""
    source = BlackMapPublished.decode((EXAMPLES / "pms.BlackMapPublished.xml").read_bytes())
    message = source.model_copy(
        update={"equipment": tuple(source.equipment[0].model_copy(update={"name": n}) for n in names)}
    )
    element = etree.Element(f"{{{NS}}}BlackMap", nsmap={None: NS})
    lxml_error = None
    try:
        for name in names:
            etree.SubElement(element, f"{{{NS}}}name").text = name
    except ValueError:
        lxml_error = True
    try:
        event = events.black_map_created(message, context(message_id=message_id))
    except MappingError as exc:
        assert lxml_error and "BlackMap.name" in exc.reason
        return
    assert not lxml_error
    event = CanonicalEvent(**{**{f: getattr(event, f) for f in (
        "verb", "noun", "timestamp", "message_id", "correlation_id", "properties", "revision", "source")},
        "payload": event.payload, "comment": comment})
    try:
        expected = reference_encoding(event)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)):
            event.encode()
        return
    assert event.encode() == expected


@pytest.mark.parametrize("payload", [
    b'<BlackMap xmlns="urn:gridbus:canonical:BlackMap:1">\n  <mRID>PMS-GR-1</mRID>\n</BlackMap>',
    b'<BlackMap xmlns="urn:gridbus:canonical:BlackMap:1"><mRID><![CDATA[a<b]]></mRID><name></name></BlackMap>',
    b'<b:BlackMap xmlns:b="urn:gridbus:canonical:BlackMap:1"><mRID>no namespace</mRID></b:BlackMap>',
    b'<BlackMap xmlns="urn:gridbus:canonical:BlackMap:1" xmlns:m="http://iec.ch/TC57/2011/schema/message">'
    b"<m:Verb>x</m:Verb><!-- c --><?pi x?></BlackMap>",
])
def test_payloads_the_parser_rewrites_are_encoded_as_before(payload):
    for given_as in (payload, xml.parse_xml(payload), etree.fromstring(payload)):
        event = CanonicalEvent(verb="created", noun="BlackMap", timestamp=NOW, message_id="m", correlation_id="c",
                               payload=given_as)
        assert event.encode() == reference_encoding(event)


def test_element_with_a_tail_or_over_the_limit_is_still_refused():
    root = etree.fromstring(b'<r><BlackMap xmlns="urn:gridbus:canonical:BlackMap:1"/>tail</r>')
    with pytest.raises(ContractViolation):
        CanonicalEvent(verb="created", noun="BlackMap", timestamp=NOW, message_id="m", correlation_id="c",
                       payload=root[0])
    builder = PayloadBuilder("BlackMap", NS)
    builder.add(builder.root, "name", None, "x" * (xml.DEFAULT_MAX_BYTES + 1))
    with pytest.raises(ContractViolation, match="over the limit"):
        CanonicalEvent(verb="created", noun="BlackMap", timestamp=NOW, message_id="m", correlation_id="c",
                       payload=builder.build())


def test_built_payload_in_the_wrong_namespace_is_refused_and_cannot_be_forged():
    builder = PayloadBuilder("BlackMap", NS)
    with pytest.raises(ValueError, match="urn:gridbus:canonical:SupplyPlan:1"):
        CanonicalEvent(verb="created", noun="SupplyPlan", timestamp=NOW, message_id="m", correlation_id="c",
                       payload=builder.build())
    with pytest.raises(TypeError):
        BuiltPayload(b"<x/>", "x", NS)


def test_built_element_and_bytes_payloads_are_the_same_event():
    message = BlackMapPublished.decode((EXAMPLES / "pms.BlackMapPublished.xml").read_bytes())
    event = events.black_map_created(message, context())
    fields = {name: value for name, value in event.__dict__.items() if name != "_body"}
    for payload in (event.payload, etree.fromstring(event.payload)):
        other = CanonicalEvent(**(fields | {"payload": payload}))
        assert other == event and other.encode() == event.encode()


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0" encoding="UTF-8"?>\n<a>\n<b>\xe6\x96\x87</a>',
    b'\xef\xbb\xbf<?xml version="1.0" encoding="utf8"?><a>\xe6\x96\x87</a>',
    b'<a>\xe6\x96\x87</a>',
])
def test_utf8_bodies_parse_as_their_decoded_text_does(body):
    text = body.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    declaration = text.find("?>") + 2 if text.startswith("<?xml ") else 0
    as_text = ("\n" * text[:declaration].count("\n") + text[declaration:]).encode("utf-8")
    try:
        expected = etree.tostring(etree.fromstring(as_text, xml._PARSER))
    except etree.XMLSyntaxError as exc:
        with pytest.raises(ContractViolation, match=f"line {exc.lineno}"):
            xml.parse_xml(body)
        return
    assert etree.tostring(xml.parse_xml(body)) == expected


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",))))
def test_json_notices_are_what_json_dumps_writes(text):
    notice = BlackMapNotice(application_no="HV1", graph_id=text, graph_version=3, plan_revision=2, published_at=NOW,
                            substation=text, feeder="f", equipment_count=2, may_energize=False, hold_reason=text,
                            notified_at=NOW.astimezone(timezone.utc))
    assert notice.encode() == notice._encode_with_json()


def test_json_notice_refusals_are_unchanged():
    notice = BlackMapNotice(application_no="HV1", graph_id="a\ud800", graph_version=3, plan_revision=None,
                            published_at=NOW, substation="s", feeder="f", equipment_count=2, may_energize=True,
                            notified_at=NOW)
    with pytest.raises(UnicodeEncodeError):
        notice.encode()


def test_example_notices_are_byte_identical():
    black_map = BlackMapPublished.decode((EXAMPLES / "pms.BlackMapPublished.xml").read_bytes())
    plan = PlanChanged.decode((EXAMPLES / "cmd.PlanChanged.xml").read_bytes())
    for notice in (pms_to_mkt.black_map_notice(black_map, context()), cmd_to_mkt.plan_change_notice(plan, context())):
        assert notice.encode() == notice._encode_with_json()
        assert json.loads(notice.encode())


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(_TEXT, _TEXT, _TEXT)
def test_output_message_ids_are_the_rfc_4122_uuid5_of_route_step_and_source(route, step, source):
    import uuid

    from gridbus.workers.pipeline import OUTPUT_ID_NAMESPACE, output_message_id

    assert output_message_id(route, step, source) == str(uuid.uuid5(OUTPUT_ID_NAMESPACE, f"{route}/{step}/{source}"))
