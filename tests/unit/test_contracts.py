"""Inbound contracts decode their examples and refuse bad input with a reason naming the problem."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.mkt import EnergizationTimeSet, SupplyPlanPushed
from gridbus.contracts.pms import BlackMapPublished
from gridbus.contracts.errors import ContractViolation

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"

INBOUND = {
    SupplyPlanPushed: "mkt.SupplyPlanPushed.json",
    EnergizationTimeSet: "mkt.EnergizationTimeSet.json",
    BlackMapPublished: "pms.BlackMapPublished.xml",
    PlanChanged: "cmd.PlanChanged.xml",
}


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def example_json(name: str) -> dict:
    return json.loads(example(name))


def refused(contract, body: bytes) -> str:
    with pytest.raises(ContractViolation) as caught:
        contract.decode(body)
    return caught.value.reason


def as_body(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("contract,name", INBOUND.items(), ids=lambda v: getattr(v, "__name__", v))
def test_every_example_decodes(contract, name):
    message = contract.decode(example(name))
    assert isinstance(message, contract)
    assert message.application_no == "HV2026110300017"


@pytest.mark.parametrize("contract", INBOUND)
def test_message_type_is_the_class_name(contract):
    assert contract.message_type == contract.__name__


# ---------------------------------------------------------------- SupplyPlanPushed (JSON)


def test_supply_plan_fields():
    plan = SupplyPlanPushed.decode(example("mkt.SupplyPlanPushed.json"))
    assert plan.customer.name == "杭州西溪精密机械有限公司"
    assert str(plan.access_plan.supply_voltage_kv) == "10"
    assert [p.power_source for p in plan.access_plan.supply_points] == ["main", "backup"]
    assert plan.access_plan.supply_points[0].substation == "杭州110kV文一变"
    assert plan.metering_plan.metering_points[1].voltage_kv == Decimal("0.4")
    assert plan.intended_energization_time.isoformat() == "2026-12-15T09:00:00+08:00"


def test_personal_data_stays_out_of_repr():
    plan = SupplyPlanPushed.decode(example("mkt.SupplyPlanPushed.json"))
    text = repr(plan)
    assert "13957112345" not in text and "杭州西溪精密机械有限公司" not in text and "91330106MA2KE8Q100" not in text


@pytest.mark.parametrize("number, accepted", [
    ("91330106MA2KE8Q100", True),  # an organisation customer: a valid credit code
    ("11010519491231002X", True),  # a person: a resident identity number with its check
    ("91330106MA2KE8Q15C", False),  # the old example: neither
    ("110105194912310021", False),  # a resident number with the wrong check character
    ("110105491231002", False),  # the old 15-digit numbers
])
def test_the_customer_id_number_is_checked_by_its_own_rule(number, accepted):
    document = example_json("mkt.SupplyPlanPushed.json")
    document["customer"]["id_number"] = number
    if accepted:
        assert SupplyPlanPushed.decode(as_body(document)).customer.id_number == number
    else:
        reason = refused(SupplyPlanPushed, as_body(document))
        assert "customer.id_number" in reason and number not in reason


def test_id_number_is_optional():
    document = example_json("mkt.SupplyPlanPushed.json")
    del document["customer"]["id_number"]
    assert SupplyPlanPushed.decode(as_body(document)).customer.id_number is None


def test_wrong_schema_version_is_refused_naming_the_version():
    document = example_json("mkt.SupplyPlanPushed.json") | {"schema_version": "2"}
    reason = refused(SupplyPlanPushed, as_body(document))
    assert "schema_version '2' is not supported" in reason


def test_missing_schema_version_is_refused():
    document = example_json("mkt.EnergizationTimeSet.json")
    del document["schema_version"]
    assert "schema_version is missing" in refused(EnergizationTimeSet, as_body(document))


def test_schema_version_as_number_is_refused():
    document = example_json("mkt.EnergizationTimeSet.json") | {"schema_version": 1}
    assert "schema_version 1 is not supported" in refused(EnergizationTimeSet, as_body(document))


def test_missing_nested_field_is_named():
    document = example_json("mkt.SupplyPlanPushed.json")
    del document["access_plan"]["supply_points"][1]["line"]
    reason = refused(SupplyPlanPushed, as_body(document))
    assert "field access_plan.supply_points[1].line: Field required" in reason


def test_unknown_field_is_refused():
    document = example_json("mkt.SupplyPlanPushed.json")
    document["billing_plan"]["discount"] = "0.9"
    assert "field billing_plan.discount: Extra inputs are not permitted" in refused(SupplyPlanPushed, as_body(document))


def test_naive_datetime_is_refused():
    document = example_json("mkt.SupplyPlanPushed.json") | {"intended_energization_time": "2026-12-15T09:00:00"}
    reason = refused(SupplyPlanPushed, as_body(document))
    assert "field intended_energization_time: Input should have timezone info" in reason


def test_no_supply_point_is_refused():
    document = example_json("mkt.SupplyPlanPushed.json")
    document["access_plan"]["supply_points"] = []
    assert "access_plan.supply_points" in refused(SupplyPlanPushed, as_body(document))


def test_no_metering_point_is_refused():
    document = example_json("mkt.SupplyPlanPushed.json")
    document["metering_plan"]["metering_points"] = []
    assert "metering_plan.metering_points" in refused(SupplyPlanPushed, as_body(document))


@pytest.mark.parametrize(
    "path,value,field",
    [
        (("plan_revision",), 0, "plan_revision"),
        (("plan_revision",), "1", "plan_revision"),  # strict: no string-to-int coercion
        (("access_plan", "contract_capacity_kva"), -5, "access_plan.contract_capacity_kva"),
        (("access_plan", "supply_points", 0, "power_source"), "spare", "access_plan.supply_points[0].power_source"),
        (("metering_plan", "metering_points", 0, "ct_ratio"), "200/5", "metering_plan.metering_points[0].ct_ratio"),
        (("application_no",), "hv-17", "application_no"),
        (("customer", "contact_phone"), "call me", "customer.contact_phone"),
    ],
)
def test_bad_values_are_refused_naming_the_field(path, value, field):
    document = example_json("mkt.SupplyPlanPushed.json")
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert f"field {field}:" in refused(SupplyPlanPushed, as_body(document))


@pytest.mark.parametrize("text", ["文一变\u0000", "\u0007", "\uffff"])
def test_text_xml_peers_cannot_carry_is_refused(text):
    document = example_json("mkt.SupplyPlanPushed.json")
    document["access_plan"]["supply_points"][0]["substation"] = text
    body = json.dumps(document).encode("utf-8")  # ASCII escapes, so lone surrogates survive
    assert "field access_plan.supply_points[0].substation:" in refused(SupplyPlanPushed, body)


def test_lone_surrogate_escape_is_refused():
    body = b'{"schema_version": "1", "application_no": "HV2026110300017", "revision": 1, "set_by": "a\\ud800"}'
    assert "Invalid JSON" in refused(EnergizationTimeSet, body)


def test_refusal_does_not_echo_personal_data():
    document = example_json("mkt.SupplyPlanPushed.json")
    document["customer"]["contact_phone"] = "not-a-phone 王小明"
    assert "王小明" not in refused(SupplyPlanPushed, as_body(document))


def test_json_not_an_object_is_refused():
    assert "JSON must be an object, got list" in refused(SupplyPlanPushed, b"[1, 2]")


def test_malformed_json_is_refused_with_position():
    reason = refused(SupplyPlanPushed, b'{"schema_version": "1",\n "application_no": }')
    assert "malformed JSON" in reason and "line 2" in reason


def test_non_utf8_json_is_refused():
    body = as_body(example_json("mkt.SupplyPlanPushed.json")).decode("utf-8").encode("gbk")
    assert "JSON must be UTF-8" in refused(SupplyPlanPushed, body)


def test_duplicate_keys_are_refused():
    body = b'{"schema_version": "1", "revision": 1, "revision": 2}'
    assert "duplicate key 'revision'" in refused(EnergizationTimeSet, body)


def test_nan_is_refused():
    body = b'{"schema_version": "1", "revision": NaN}'
    assert "NaN is not valid JSON" in refused(EnergizationTimeSet, body)


def test_energization_time_fields():
    message = EnergizationTimeSet.decode(example("mkt.EnergizationTimeSet.json"))
    assert message.revision == 2
    assert message.intended_energization_time.isoformat() == "2026-12-18T09:30:00+08:00"


def test_energization_time_naive_set_at_is_refused():
    document = example_json("mkt.EnergizationTimeSet.json") | {"set_at": "2026-11-25 10:05:00"}
    assert "field set_at:" in refused(EnergizationTimeSet, as_body(document))


# ---------------------------------------------------------------- BlackMapPublished, PlanChanged (XML)


def test_black_map_fields():
    black_map = BlackMapPublished.decode(example("pms.BlackMapPublished.xml"))
    assert black_map.graph_version == 3
    assert black_map.substation == "杭州110kV文一变"
    assert [e.kind for e in black_map.equipment] == ["Breaker", "ACLineSegment", "PowerTransformer", "PowerTransformer"]
    assert black_map.published_at.isoformat() == "2026-12-08T16:45:00+08:00"


def test_gbk_example_is_really_gbk_and_decodes_identically():
    gbk = example("pms.BlackMapPublished.gbk.xml")
    assert gbk.startswith(b'<?xml version="1.0" encoding="GBK"?>')
    with pytest.raises(UnicodeDecodeError):
        gbk.decode("utf-8")
    assert BlackMapPublished.decode(gbk) == BlackMapPublished.decode(example("pms.BlackMapPublished.xml"))
    assert BlackMapPublished.decode(gbk).equipment[2].name == "西溪精密机械1号专变"


def test_gbk_bytes_declared_utf8_are_refused():
    body = example("pms.BlackMapPublished.gbk.xml").replace(b'encoding="GBK"', b'encoding="UTF-8"')
    assert "declared UTF-8 but bytes are not valid UTF-8" in refused(BlackMapPublished, body)


def test_version_2_namespace_is_refused():
    body = example("pms.BlackMapPublished.xml").replace(b"black-map:1", b"black-map:2")
    assert refused(BlackMapPublished, body) == (
        "expected {urn:gridbus:pms:black-map:1}BlackMapPublished version 1, "
        "got '{urn:gridbus:pms:black-map:2}BlackMapPublished'"
    )


def test_other_root_is_refused():
    assert "expected {urn:gridbus:cmd:plan-change:1}PlanChanged" in refused(PlanChanged, example("pms.BlackMapPublished.xml"))


def test_malformed_xml_is_refused():
    body = example("cmd.PlanChanged.xml").replace(b"</ChangedBy>", b"</Changed>")
    assert refused(PlanChanged, body).startswith("malformed XML:")


def test_missing_required_element_is_named():
    body = example("pms.BlackMapPublished.xml").replace(b"<Reviewer>\xe7\x8e\x8b\xe5\xbb\xba\xe5\x9b\xbd</Reviewer>", b"")
    reason = refused(BlackMapPublished, body)
    assert "Reviewer" in reason and "Missing child element" in reason


def test_naive_xml_datetime_is_refused():
    body = example("pms.BlackMapPublished.xml").replace(b"2026-12-08T16:45:00+08:00", b"2026-12-08T16:45:00")
    reason = refused(BlackMapPublished, body)
    assert "/BlackMapPublished/PublishedAt" in reason


def test_unknown_plan_section_is_refused():
    body = example("cmd.PlanChanged.xml").replace(b"<Section>access</Section>", b"<Section>customer</Section>", 1)
    reason = refused(PlanChanged, body)
    assert "/PlanChanged/Changes/Change[1]/Section" in reason and "customer" in reason


def test_xxe_in_a_contract_is_refused():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE PlanChanged [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<PlanChanged xmlns="urn:gridbus:cmd:plan-change:1"><ApplicationNo>&x;</ApplicationNo></PlanChanged>'
    )
    reason = refused(PlanChanged, body)
    assert "DTD" in reason and "root:" not in reason


def test_oversized_xml_is_refused():
    body = example("cmd.PlanChanged.xml").replace(b"<ChangedBy>", b"<!--" + b"x" * PlanChanged.max_bytes + b"--><ChangedBy>")
    assert "over the limit" in refused(PlanChanged, body)


def test_plan_changed_fields():
    message = PlanChanged.decode(example("cmd.PlanChanged.xml"))
    assert message.plan_revision == 2
    assert message.changes[0].new_value == "10kV古墩线"


# ---------------------------------------------------------------- every decoder, any bytes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode)))
def test_random_bytes_never_raise_anything_but_contract_violation(body):
    from gridbus.routes import ROUTES

    for contract in dict.fromkeys(route.contract for route in ROUTES):  # every route's, the retail market's too
        try:
            contract.decode(body)
        except ContractViolation as exc:
            assert exc.reason


@settings(max_examples=100, deadline=None)
@given(
    field=st.sampled_from(sorted(example_json("mkt.SupplyPlanPushed.json"))),
    value=st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20), st.lists(st.integers(), max_size=3)),
)
def test_any_field_replaced_with_junk_is_refused_or_accepted_never_crashes(field, value):
    document = example_json("mkt.SupplyPlanPushed.json") | {field: value}
    try:
        SupplyPlanPushed.decode(as_body(document))
    except ContractViolation as exc:
        assert exc.reason


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(example("cmd.PlanChanged.xml").rstrip()) - 1))
def test_truncated_xml_is_refused(cut):
    with pytest.raises(ContractViolation):
        PlanChanged.decode(example("cmd.PlanChanged.xml").rstrip()[:cut])


def _xml_contracts():
    from gridbus.contracts.tc import SalesCompanyArchivePushed, TripartiteAgreementSigned, UserUnitReviewPassed

    return [
        (BlackMapPublished, "pms.BlackMapPublished.xml"),
        (BlackMapPublished, "pms.BlackMapPublished.gbk.xml"),
        (PlanChanged, "cmd.PlanChanged.xml"),
        (SalesCompanyArchivePushed, "tc.SalesCompanyArchivePushed.xml"),
        (SalesCompanyArchivePushed, "tc.SalesCompanyArchivePushed.gbk.xml"),
        (UserUnitReviewPassed, "tc.UserUnitReviewPassed.xml"),
        (TripartiteAgreementSigned, "tc.TripartiteAgreementSigned.xml"),
    ]


def _split_by(document: bytes, make_node) -> list[bytes]:
    """The document once per leaf element, that leaf's text split in two around a new node."""
    from lxml import etree

    from gridbus.contracts import xml

    encoding = "GBK" if b'encoding="GBK"' in document[:60] else "UTF-8"
    root = etree.fromstring(xml._decode(document)[0], xml._UTF8_PARSER)
    variants = []
    for position, leaf in enumerate(root.iter()):
        if len(leaf) or not leaf.text or len(leaf.text) < 2:
            continue
        copy = etree.fromstring(etree.tostring(root))
        target = list(copy.iter())[position]
        text = target.text
        node = make_node()
        target.text, node.tail = text[:1], text[1:]
        target.append(node)
        variants.append(etree.tostring(copy, encoding=encoding, xml_declaration=True))
    return variants


@pytest.mark.parametrize("contract,name", _xml_contracts(), ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("node", ["comment", "processing instruction"])
def test_a_comment_or_instruction_inside_a_value_leaves_the_value_whole(contract, name, node):
    """XML Schema reads ``<Feeder>10kV<!-- x -->城东线</Feeder>`` as the value "10kV城东线"; so must we."""
    from lxml import etree

    original = contract.decode(example(name))
    make = (lambda: etree.Comment(" reviewed ")) if node == "comment" else (lambda: etree.ProcessingInstruction("pms", "x"))
    variants = _split_by(example(name), make)
    assert len(variants) >= 5
    for body in variants:
        assert contract.decode(body) == original
