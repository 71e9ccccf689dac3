"""Flow 10's contracts and outputs: seed 003 Table 1 as object types, PMS's XML and marketing's
JSON change (strict, GBK with Chinese intact), and the reply, data-platform message and event."""

from __future__ import annotations

import typing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gridbus.contracts import EXAMPLES_DIR, xml
from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical.envelope import NAMESPACE as MESSAGE_NS
from gridbus.contracts.canonical.reply import SCHEMA as MESSAGE_XSD
from gridbus.contracts.errors import ContractViolation
from gridbus.contracts.master_data import OBJECT_TYPES, ObjectTypeCode
from gridbus.contracts.mkt.master_data import MktMasterDataChanged
from gridbus.contracts.pms.master_data import SCHEMA, PmsMasterDataChanged
from gridbus.mappings.master_data import outputs
from tests.support.master_data import change, mkt_json, pms_xml

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=timezone(timedelta(hours=8)))
M = {"m": MESSAGE_NS}
MESSAGE_SCHEMA = etree.XMLSchema(etree.parse(str(MESSAGE_XSD)))


# -- Table 1 --------------------------------------------------------------------------------------------


def test_table_1_has_its_rows_once_each_with_an_owner_and_a_noun():
    rows = {"pms": [], "mkt": []}
    for kind in OBJECT_TYPES.values():
        rows[kind.owner].append(kind.row)
        assert kind.noun[:1].isupper() and kind.noun.isalnum()
        for ends in kind.ends or ():
            assert ends and ends <= set(OBJECT_TYPES)
    assert rows == {"pms": list(range(1, 16)), "mkt": list(range(1, 15))}
    assert len({k.noun for k in OBJECT_TYPES.values()}) == len(OBJECT_TYPES)


def test_the_wire_codes_are_the_table_s_in_the_model_and_in_the_schema():
    assert set(typing.get_args(ObjectTypeCode)) == set(OBJECT_TYPES)
    schema = etree.parse(str(SCHEMA))
    values = schema.xpath("//xs:simpleType[@name='ObjectType']//xs:enumeration/@value",
                          namespaces={"xs": "http://www.w3.org/2001/XMLSchema"})
    assert values == list(OBJECT_TYPES)


def test_cim_nouns_where_cim_has_the_class():
    cim = {k.code: k.noun for k in OBJECT_TYPES.values() if k.cim}
    assert cim == {
        "substation": "Substation", "line": "Line", "transformer": "PowerTransformer", "metering-point": "UsagePoint",
        "meter": "Meter", "customer": "Customer", "structured-address": "ServiceLocation", "power-plant": "GeneratingUnit",
    }


# -- contracts --------------------------------------------------------------------------------------------


def test_the_examples_decode():
    pms = PmsMasterDataChanged.decode((EXAMPLES_DIR / "pms.MasterDataChanged.xml").read_bytes())
    assert (pms.object_type, pms.transformer_use, pms.fields[0].new) == ("transformer", "public", "城东1号公变")
    mkt = MktMasterDataChanged.decode((EXAMPLES_DIR / "mkt.MasterDataChanged.json").read_bytes())
    assert (mkt.object_type, mkt.operation, mkt.changed_at.utcoffset()) == ("metering-point", "create", timedelta(hours=8))
    assert PmsMasterDataChanged.system == "pms" and MktMasterDataChanged.system == "mkt"


@pytest.mark.parametrize("encoding", ["GBK", "GB18030", "GB2312"])
def test_a_chinese_encoded_pms_change_keeps_its_chinese(encoding):
    decoded = change("pms", "substation", "SUB-1", fields={"Name": "城东110kV第一变电站"}, encoding=encoding)
    assert decoded.fields[0].new == "城东110kV第一变电站"
    gbk = PmsMasterDataChanged.decode((EXAMPLES_DIR / "pms.MasterDataChanged.gbk.xml").read_bytes())
    assert [f.new for f in gbk.fields] == ["城东110kV第一变电站", "110kV", "杭州市西湖区文一西路998号"]


def test_gbk_bytes_declared_utf8_are_refused():
    body = pms_xml("substation", "SUB-1", fields={"Name": "城东变"}, encoding="GBK").replace(b"GBK", b"UTF-8", 1)
    with pytest.raises(ContractViolation, match="declared UTF-8 but bytes are not valid UTF-8"):
        PmsMasterDataChanged.decode(body)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"object_type": "transformer"}, "a transformer must name its use"),
        ({"object_type": "line", "use": "public"}, "only a transformer has a use"),
        ({"object_type": "line-transformer"}, "relation must name both its ends"),
        ({"object_type": "line", "ends": ("A", "B")}, "only a relation names ends"),
        ({"object_type": "line", "fields": {"Name": ("old", "new")}}, "a created object has no old values"),
        ({"object_type": "line", "operation": "delete", "fields": {"Name": "x"}}, "a deleted object has no new values"),
    ],
)
@pytest.mark.parametrize("system", ["pms", "mkt"])
def test_inconsistent_changes_are_refused(system, kwargs, message):
    kwargs = dict(kwargs)
    object_type = kwargs.pop("object_type")
    with pytest.raises(ContractViolation, match=message):
        change(system, object_type, "X-1", **kwargs)


@pytest.mark.parametrize("system", ["pms", "mkt"])
def test_unknown_object_types_and_bad_codes_are_refused(system):
    with pytest.raises(ContractViolation):
        change(system, "power-line", "X-1")
    with pytest.raises(ContractViolation):
        change(system, "line", "bad code")
    with pytest.raises(ContractViolation):
        change(system, "line", "X-1", order="not-an-order")


def test_a_field_changed_twice_is_refused():
    body = mkt_json("meter", "M-1").replace(b'"fields": [', b'"fields": [{"name": "Name", "new": "x"}, ', 1)
    with pytest.raises(ContractViolation, match="'Name' is changed twice"):
        MktMasterDataChanged.decode(body)


def test_a_change_time_without_offset_is_refused():
    body = mkt_json("meter", "M-1").replace(b'+08:00"', b'"', 1)
    with pytest.raises(ContractViolation, match="changed_at"):
        MktMasterDataChanged.decode(body)
    xml = pms_xml("line", "L-1").replace(b"+08:00</ChangedAt>", b"</ChangedAt>")
    with pytest.raises(ContractViolation, match="ChangedAt"):
        PmsMasterDataChanged.decode(xml)


def test_a_doctype_is_refused():
    body = pms_xml("line", "L-1").replace(b"?>", b'?><!DOCTYPE x [<!ENTITY a "b">]>', 1)
    with pytest.raises(ContractViolation, match="DOCTYPE"):
        PmsMasterDataChanged.decode(body)


# -- outputs --------------------------------------------------------------------------------------------------


def context(system: str, decision: dict, step: str = "reply") -> MappingContext:
    return MappingContext(route=f"{system}.master-data-changed", step=step, message_id="out-1", correlation_id="c-1",
                          source_message_id="in-1", source_system=system, now=NOW, decision=decision)


def test_a_refusal_is_a_failed_reply_naming_the_code_the_owner_the_route_and_the_message():
    message = change("mkt", "substation", "SUB-9")
    decision = {"decision": "refused", "owner": "pms", "object_type": "substation", "error": "not-system-of-record",
                "reason": "mkt is not the system of record for substation"}
    body = outputs.reply(message, context("mkt", decision)).encode()
    root = etree.fromstring(body)
    assert MESSAGE_SCHEMA.validate(root), MESSAGE_SCHEMA.error_log
    assert root.xpath("m:Header/m:Verb/text()", namespaces=M) == ["reply"]
    assert root.xpath("m:Header/m:Noun/text()", namespaces=M) == ["Substation"]
    assert root.xpath("m:Header/m:CorrelationID/text()", namespaces=M) == ["in-1"]
    assert root.xpath("m:Reply/m:Result/text()", namespaces=M) == ["FAILED"]
    [error] = root.xpath("m:Reply/m:Error", namespaces=M)
    assert error.findtext(f"{{{MESSAGE_NS}}}code") == "not-system-of-record"
    assert error.findtext(f"{{{MESSAGE_NS}}}level") == "FATAL"
    assert error.findtext(f"{{{MESSAGE_NS}}}reason") == (
        "mkt is not the system of record for substation (route mkt.master-data-changed, message in-1)")
    ident = error.find(f"{{{MESSAGE_NS}}}ID")
    assert (ident.text, ident.get("idType"), ident.get("idAuthority")) == ("SUB-9", "BusinessCode", "pms")


def test_an_accepted_change_is_an_ok_reply_and_a_message_to_the_data_platform():
    message = change("pms", "transformer", "PTR-1", use="public", fields={"Name": "城东1号公变"})
    decision = {"decision": "accepted", "owner": "pms", "object_type": "transformer", "verb": "created"}
    reply = etree.fromstring(outputs.reply(message, context("pms", decision)).encode())
    assert reply.xpath("m:Reply/m:Result/text()", namespaces=M) == ["OK"] and not reply.xpath("//m:Error", namespaces=M)
    dmp = outputs.data_platform(message, context("pms", decision, "dmp"))
    assert (dmp.noun, dmp.verb, dmp.routing_key) == ("PowerTransformer", "created", "PowerTransformer.created")
    root = etree.fromstring(dmp.encode())
    assert MESSAGE_SCHEMA.validate(root), MESSAGE_SCHEMA.error_log
    ns = {"p": "urn:gridbus:canonical:PowerTransformer:1"}
    payload = root.xpath("m:Payload/p:PowerTransformer", namespaces={**M, **ns})[0]
    assert payload.xpath("p:mRID/text()", namespaces=ns) == ["PTR-1"]
    assert payload.xpath("p:use/text()", namespaces=ns) == ["public"]
    assert payload.xpath("p:Field/p:newValue/text()", namespaces=ns) == ["城东1号公变"]


def test_nothing_goes_on_for_a_refused_or_superseded_change():
    message = change("pms", "line", "L-1")
    for outcome in ("refused", "superseded", "repeat"):
        decision = {"decision": outcome, "owner": "pms", "object_type": "line", "error": "x", "reason": "r"}
        assert outputs.data_platform(message, context("pms", decision)) is None
        assert outputs.event(message, context("pms", decision)) is None


def test_events_name_personal_fields_without_their_values_the_data_platform_has_them():
    message = change("mkt", "customer", "C-1", fields={"CustomerName": "张三", "ContactPhone": "13800000000",
                                                        "Category": "large_industrial"})
    decision = {"decision": "accepted", "owner": "mkt", "object_type": "customer", "verb": "created"}
    event = outputs.event(message, context("mkt", decision, "event")).encode().decode()
    assert "CustomerName" in event and "张三" not in event and "13800000000" not in event
    assert "large_industrial" in event and "kh330106017" not in event  # nor the staff id
    dmp = outputs.data_platform(message, context("mkt", decision, "dmp")).encode().decode()
    assert "张三" in dmp and "kh330106017" in dmp


# -- the examples to their expected outputs (tests/unit/expected/) ----------------------------------------------

EXPECTED = Path(__file__).parent / "expected"
ACCEPTED = {"decision": "accepted", "verb": "created"}
EXPECTED_OUTPUTS = [
    ("pms.MasterDataChanged.xml", PmsMasterDataChanged, outputs.data_platform, {**ACCEPTED, "owner": "pms"},
     "master_data.data_platform.xml"),
    ("mkt.MasterDataChanged.json", MktMasterDataChanged, outputs.event, {**ACCEPTED, "owner": "mkt"},
     "master_data.event.xml"),
    ("pms.MasterDataChanged.gbk.xml", PmsMasterDataChanged, outputs.reply,
     {"decision": "superseded", "owner": "pms", "reason": "revision 4 is older than revision 6 held for substation "
      "SUB-330106-0001"}, "master_data.reply_superseded.xml"),
]


def canonical(data: bytes) -> bytes:
    return etree.tostring(xml.parse_xml(data), method="c14n")


@pytest.mark.parametrize(("example", "contract", "mapping", "decision", "expected"), EXPECTED_OUTPUTS,
                         ids=[case[-1] for case in EXPECTED_OUTPUTS])
def test_each_output_of_the_examples_is_the_expected_one(example, contract, mapping, decision, expected):
    message = contract.decode((EXAMPLES_DIR / example).read_bytes())
    body = mapping(message, context(contract.system, decision)).encode()
    assert MESSAGE_SCHEMA.validate(etree.fromstring(body)), MESSAGE_SCHEMA.error_log
    assert canonical(body) == canonical((EXPECTED / expected).read_bytes())


# -- both contracts read the same change the same way --------------------------------------------------------------

_texts = st.text(st.characters(codec="gb18030", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1,
                 max_size=30)


@given(
    kind=st.sampled_from([k for k in OBJECT_TYPES.values() if not k.relation]),
    values=st.dictionaries(st.from_regex(r"[A-Z][a-z]{2,10}", fullmatch=True), _texts, max_size=5),
    revision=st.integers(1, 10**6),
    encoding=st.sampled_from(["UTF-8", "GB18030"]),
)
@settings(max_examples=60, deadline=None)
def test_pms_xml_and_marketing_json_of_one_change_decode_alike(kind, values, revision, encoding):
    use = "public" if kind.code == "transformer" else None
    args = dict(operation="change", revision=revision, use=use, fields={k: ("旧", v) for k, v in values.items()},
                order="YD2026120800001")
    pms = PmsMasterDataChanged.decode(pms_xml(kind.code, "BC-1", **args, encoding=encoding))
    mkt = MktMasterDataChanged.decode(mkt_json(kind.code, "BC-1", **args, changed_by="sc330106021"))
    assert pms.model_dump() == {k: v for k, v in mkt.model_dump().items() if k != "schema_version"}
    assert {f.name: f.new for f in pms.fields} == values
