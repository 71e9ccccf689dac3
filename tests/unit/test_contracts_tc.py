"""Trading-center contracts (flows 5-8): the XML it publishes, the SOAP requests it receives,
and the retail-market JSON gridbus sends to marketing."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import zeep
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gridbus.adapters import soap as soap_adapter
from gridbus.contracts import mkt
from gridbus.contracts.tc import (
    RetailMeteringPoint,
    SalesCompanyArchivePushed,
    Shareholder,
    TripartiteAgreementSigned,
    UserUnitReviewPassed,
)
from gridbus.contracts.tc.soap import ArchivalResult, ArchiveFeedback, ChunkReading, MeterReadingsChunk, UserReviewResult
from tests.support.retail import tc_requests
from gridbus.contracts.errors import ContractViolation

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "contracts" / "examples"
WSDL = ROOT / "contracts" / "tc" / "TradingCenterService.wsdl"
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=CST)

INBOUND = {
    SalesCompanyArchivePushed: "tc.SalesCompanyArchivePushed.xml",
    UserUnitReviewPassed: "tc.UserUnitReviewPassed.xml",
    TripartiteAgreementSigned: "tc.TripartiteAgreementSigned.xml",
}
ARCHIVE = "tc.SalesCompanyArchivePushed.xml"
REVIEW = "tc.UserUnitReviewPassed.xml"
SIGNING = "tc.TripartiteAgreementSigned.xml"


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def edited(name: str, old: str, new: str) -> bytes:
    """The example with ``old`` (which must occur) replaced by ``new``."""
    text = example(name).decode("utf-8")
    assert old in text, old
    return text.replace(old, new, 1).encode("utf-8")


def refused(contract, body: bytes) -> str:
    with pytest.raises(ContractViolation) as caught:
        contract.decode(body)
    return caught.value.reason


# ---------------------------------------------------------------- every inbound contract


@pytest.mark.parametrize("contract", INBOUND)
def test_message_type_is_the_class_name(contract):
    assert contract.message_type == contract.__name__


@pytest.mark.parametrize("contract,name", INBOUND.items(), ids=lambda v: getattr(v, "__name__", v))
def test_version_2_namespace_is_refused(contract, name):
    namespace = {
        SalesCompanyArchivePushed: "urn:gridbus:tc:sales-company-archive:",
        UserUnitReviewPassed: "urn:gridbus:tc:user-unit-review:",
        TripartiteAgreementSigned: "urn:gridbus:tc:tripartite-agreement:",
    }[contract]
    body = edited(name, f'xmlns="{namespace}1"', f'xmlns="{namespace}2"')
    assert refused(contract, body) == (
        f"expected {{{namespace}1}}{contract.__name__} version 1, got '{{{namespace}2}}{contract.__name__}'"
    )


@pytest.mark.parametrize("contract", INBOUND)
def test_another_contracts_document_is_refused(contract):
    others = [name for other, name in INBOUND.items() if other is not contract]
    for name in [*others, "pms.BlackMapPublished.xml"]:
        assert f"}}{contract.__name__} version 1, got " in refused(contract, example(name))


@pytest.mark.parametrize(
    "contract,name,element",
    [
        (SalesCompanyArchivePushed, ARCHIVE, "ArchiveId"),
        (SalesCompanyArchivePushed, ARCHIVE, "PushedAt"),
        (SalesCompanyArchivePushed, ARCHIVE, "CreditCode"),
        (SalesCompanyArchivePushed, ARCHIVE, "Status"),
        (UserUnitReviewPassed, REVIEW, "CustomerNo"),
        (UserUnitReviewPassed, REVIEW, "UserName"),
        (UserUnitReviewPassed, REVIEW, "SalesCompanyCreditCode"),
        (UserUnitReviewPassed, REVIEW, "PeriodEnd"),
        (TripartiteAgreementSigned, SIGNING, "AgreementNo"),
        (TripartiteAgreementSigned, SIGNING, "Outcome"),
        (TripartiteAgreementSigned, SIGNING, "DecidedAt"),
        (UserUnitReviewPassed, REVIEW, "MeteringPoints"),  # the last one: "Missing child element(s)"
    ],
)
def test_missing_required_element_is_refused_naming_it(contract, name, element):
    text = example(name).decode("utf-8")
    start = text.index(f"<{element}>")
    end = text.index(f"</{element}>") + len(f"</{element}>")
    reason = refused(contract, (text[:start] + text[end:]).encode("utf-8"))
    assert reason.startswith("XML does not match schema ")
    assert f"Expected is ( {element} )" in reason


def test_doctype_is_refused():
    body = example(SIGNING).replace(b"<TripartiteAgreementSigned ", b"<!DOCTYPE x []><TripartiteAgreementSigned ")
    assert "DOCTYPE" in refused(TripartiteAgreementSigned, body)


# ---------------------------------------------------------------- SalesCompanyArchivePushed


def test_archive_fields():
    archive = SalesCompanyArchivePushed.decode(example(ARCHIVE))
    assert (archive.archive_id, archive.archive_revision) == ("SCA-2026-000317", 2)
    assert archive.pushed_at == datetime(2026, 11, 20, 10, 15, tzinfo=CST)
    assert archive.credit_code == "91350200776049653A"
    assert archive.status == "active"
    assert archive.name == "厦门鹭江新能售电有限公司" and archive.short_name == "鹭江新能"
    assert archive.nature == "有限责任公司(非自然人投资或控股的法人独资)"
    assert archive.address == "厦门市思明区鹭江道98号建设科技大厦17层"
    assert archive.registration_place == "厦门"
    assert archive.registered_capital_10k_yuan == Decimal("20000")
    assert archive.shareholders == (Shareholder(name="厦门鹭江能源集团有限公司", share_percent=Decimal("100")),)
    assert archive.established_on == date(2016, 3, 25)
    assert archive.legal_representative == "陈志明"
    assert archive.effective_date == date(2017, 5, 15)


def test_gbk_archive_is_really_gbk_and_decodes_identically():
    gbk = example("tc.SalesCompanyArchivePushed.gbk.xml")
    assert gbk.startswith(b'<?xml version="1.0" encoding="GBK"?>')
    with pytest.raises(UnicodeDecodeError):
        gbk.decode("utf-8")
    decoded = SalesCompanyArchivePushed.decode(gbk)
    assert decoded == SalesCompanyArchivePushed.decode(example(ARCHIVE))
    assert decoded.name == "厦门鹭江新能售电有限公司" and decoded.legal_representative == "陈志明"


def test_gb18030_archive_decodes_identically():
    text = example(ARCHIVE).decode("utf-8").replace('encoding="UTF-8"', 'encoding="GB18030"')
    body = text.encode("gb18030")
    assert SalesCompanyArchivePushed.decode(body) == SalesCompanyArchivePushed.decode(example(ARCHIVE))


@pytest.mark.parametrize("code", ["P42040113310410", "P420401133105080400", "91350200776049653B", "ABC"])
def test_invalid_credit_code_still_decodes(code):
    """Validity is the archive review's question: it reports bad codes back, the contract does not refuse them."""
    archive = SalesCompanyArchivePushed.decode(edited(ARCHIVE, "91350200776049653A", code))
    assert archive.credit_code == code


@pytest.mark.parametrize("code", ["", "   ", "X" * 65])
def test_blank_or_overlong_credit_code_is_refused(code):
    reason = refused(SalesCompanyArchivePushed, edited(ARCHIVE, "91350200776049653A", code))
    assert "/SalesCompanyArchivePushed/CreditCode" in reason


def test_only_the_identifying_elements_are_required():
    body = (
        '<SalesCompanyArchivePushed xmlns="urn:gridbus:tc:sales-company-archive:1">'
        "<ArchiveId>SCA-1</ArchiveId><ArchiveRevision>1</ArchiveRevision>"
        "<PushedAt>2026-11-20T10:15:00+08:00</PushedAt><CreditCode>P42040113310410</CreditCode>"
        "<Status>deregistered</Status></SalesCompanyArchivePushed>"
    ).encode()
    archive = SalesCompanyArchivePushed.decode(body)
    assert archive.status == "deregistered"
    assert archive.shareholders == ()
    assert archive.name is None and archive.registered_capital_10k_yuan is None and archive.effective_date is None
    assert archive.fields_for_comparison() == {
        "name": None,
        "short_name": None,
        "credit_code": "P42040113310410",
        "nature": None,
        "address": None,
        "registration_place": None,
        "registered_capital_10k_yuan": None,
        "shareholders": None,
        "established_on": None,
        "legal_representative": None,
        "status": "deregistered",
        "effective_date": None,
    }


@pytest.mark.parametrize(
    "element,value",
    [
        ("Name", "厦门鹭江新能售电有限公司"),
        ("ShortName", "鹭江新能"),
        ("Address", "厦门市思明区鹭江道98号建设科技大厦17层"),
        ("RegisteredCapital", "20000"),
        ("EstablishedOn", "2016-03-25"),
        ("LegalRepresentative", "陈志明"),
        ("EffectiveDate", "2017-05-15"),
    ],
)
@pytest.mark.parametrize("empty", ["", "  ", "\n  \t"])
def test_empty_optional_element_becomes_none(element, value, empty):
    body = edited(ARCHIVE, f"<{element}>{value}</{element}>", f"<{element}>{empty}</{element}>")
    archive = SalesCompanyArchivePushed.decode(body)
    field = {
        "Name": "name",
        "ShortName": "short_name",
        "Address": "address",
        "RegisteredCapital": "registered_capital_10k_yuan",
        "EstablishedOn": "established_on",
        "LegalRepresentative": "legal_representative",
        "EffectiveDate": "effective_date",
    }[element]
    assert getattr(archive, field) is None
    assert archive.fields_for_comparison()[field] is None


def test_self_closing_optional_elements_and_empty_shareholders():
    body = edited(ARCHIVE, "<Nature>有限责任公司(非自然人投资或控股的法人独资)</Nature>", "<Nature/>")
    text = body.decode()
    start, end = text.index("<Shareholders>"), text.index("</Shareholders>") + len("</Shareholders>")
    archive = SalesCompanyArchivePushed.decode((text[:start] + "<Shareholders/>" + text[end:]).encode())
    assert archive.nature is None and archive.shareholders == ()


def test_surrounding_whitespace_of_optional_values_is_dropped():
    archive = SalesCompanyArchivePushed.decode(
        edited(ARCHIVE, "<RegisteredCapital>20000</RegisteredCapital>", "<RegisteredCapital> 20000.50 </RegisteredCapital>")
    )
    assert archive.registered_capital_10k_yuan == Decimal("20000.50")


@pytest.mark.parametrize(
    "old,new,path",
    [
        ("<Status>active</Status>", "<Status>suspended</Status>", "/SalesCompanyArchivePushed/Status"),
        ("<RegisteredCapital>20000</RegisteredCapital>", "<RegisteredCapital>2亿</RegisteredCapital>", "RegisteredCapital"),
        ("<RegisteredCapital>20000</RegisteredCapital>", "<RegisteredCapital>-1</RegisteredCapital>", "RegisteredCapital"),
        ("<EstablishedOn>2016-03-25</EstablishedOn>", "<EstablishedOn>2016/03/25</EstablishedOn>", "EstablishedOn"),
        ("<SharePercent>100</SharePercent>", "<SharePercent>120</SharePercent>", "SharePercent"),
        ("<ArchiveRevision>2</ArchiveRevision>", "<ArchiveRevision>0</ArchiveRevision>", "ArchiveRevision"),
        ("2026-11-20T10:15:00+08:00", "2026-11-20T10:15:00", "/SalesCompanyArchivePushed/PushedAt"),
    ],
)
def test_bad_archive_values_are_refused_naming_the_element(old, new, path):
    assert path in refused(SalesCompanyArchivePushed, edited(ARCHIVE, old, new))


def test_archive_fields_for_comparison():
    body = edited(
        ARCHIVE,
        "<Shareholder>\n      <Name>厦门鹭江能源集团有限公司</Name>\n      <SharePercent>100</SharePercent>\n    </Shareholder>",
        "<Shareholder><Name>厦门鹭江能源集团有限公司</Name><SharePercent>66.50</SharePercent></Shareholder>"
        "<Shareholder><Name>福建海峡电力投资有限公司</Name><SharePercent>33.5</SharePercent></Shareholder>"
        "<Shareholder><Name>鹭江员工持股平台</Name></Shareholder>",
    )
    body = body.replace(b"<RegisteredCapital>20000</RegisteredCapital>", b"<RegisteredCapital>20000.000</RegisteredCapital>")
    fields = SalesCompanyArchivePushed.decode(body).fields_for_comparison()
    assert fields == {
        "name": "厦门鹭江新能售电有限公司",
        "short_name": "鹭江新能",
        "credit_code": "91350200776049653A",
        "nature": "有限责任公司(非自然人投资或控股的法人独资)",
        "address": "厦门市思明区鹭江道98号建设科技大厦17层",
        "registration_place": "厦门",
        "registered_capital_10k_yuan": "20000",
        "shareholders": "厦门鹭江能源集团有限公司(66.5%); 福建海峡电力投资有限公司(33.5%); 鹭江员工持股平台",
        "established_on": "2016-03-25",
        "legal_representative": "陈志明",
        "status": "active",
        "effective_date": "2017-05-15",
    }
    assert all(isinstance(v, str) for v in fields.values())


def test_archive_legal_representative_stays_out_of_repr():
    archive = SalesCompanyArchivePushed.decode(example(ARCHIVE))
    assert "陈志明" not in repr(archive) and "陈志明" not in str(archive)


# ---------------------------------------------------------------- UserUnitReviewPassed


def test_review_fields():
    review = UserUnitReviewPassed.decode(example(REVIEW))
    assert review.user_unit_id == "RU2026110001"
    assert review.reviewed_at == datetime(2026, 11, 18, 14, 30, tzinfo=CST)
    assert review.customer_no == "0731000012345"
    assert review.user_name == "长沙湘江精密铸造有限公司"
    assert review.sales_company_credit_code == "91350200776049653A"
    assert (review.period_start, review.period_end) == (date(2026, 12, 1), date(2027, 11, 30))
    assert review.metering_points == (
        RetailMeteringPoint(metering_point_id="4301050001234", category="large_industrial"),
        RetailMeteringPoint(metering_point_id="4301050001235", category="general_commercial_industrial"),
        RetailMeteringPoint(metering_point_id="4301050001236", category="residential"),
    )


def test_review_user_name_stays_out_of_repr():
    assert "长沙湘江精密铸造有限公司" not in repr(UserUnitReviewPassed.decode(example(REVIEW)))


@pytest.mark.parametrize("end", ["2026-12-01", "2026-11-30"])
def test_period_must_end_after_it_starts(end):
    body = edited(REVIEW, "<PeriodEnd>2027-11-30</PeriodEnd>", f"<PeriodEnd>{end}</PeriodEnd>")
    reason = refused(UserUnitReviewPassed, body)
    assert reason == f"UserUnitReviewPassed: Value error, PeriodEnd {end} must be after PeriodStart 2026-12-01"


def test_review_needs_a_metering_point():
    text = example(REVIEW).decode()
    start, end = text.index("<MeteringPoints>"), text.index("</MeteringPoints>") + len("</MeteringPoints>")
    reason = refused(UserUnitReviewPassed, (text[:start] + "<MeteringPoints/>" + text[end:]).encode())
    assert "/UserUnitReviewPassed/MeteringPoints" in reason and "MeteringPoint" in reason


def test_unknown_metering_category_is_refused():
    body = edited(REVIEW, "<Category>residential</Category>", "<Category>lighting</Category>")
    assert "/UserUnitReviewPassed/MeteringPoints/MeteringPoint[3]/Category" in refused(UserUnitReviewPassed, body)


def test_review_with_invalid_credit_code_decodes():
    body = edited(REVIEW, "91350200776049653A", "P42040113310410")
    assert UserUnitReviewPassed.decode(body).sales_company_credit_code == "P42040113310410"


# ---------------------------------------------------------------- TripartiteAgreementSigned


def test_signing_fields():
    signing = TripartiteAgreementSigned.decode(example(SIGNING))
    assert signing.agreement_no == "TA202612-RU2026110001" and signing.user_unit_id == "RU2026110001"
    assert signing.sales_company_credit_code == "91350200776049653A"
    assert signing.outcome == "signed"
    assert signing.decided_at == datetime(2026, 11, 25, 16, 20, tzinfo=CST)
    assert signing.effective_time == datetime(2026, 12, 1, tzinfo=CST)
    assert signing.effective_time.utcoffset() == timedelta(hours=8)
    assert signing.refusal_reason is None


REFUSED = (
    "<Outcome>refused</Outcome>\n  <DecidedAt>2026-11-25T16:20:00+08:00</DecidedAt>\n"
    "  <RefusalReason>零售用户未在规定期限内确认协议</RefusalReason>"
)
SIGNED_PART = (
    "<Outcome>signed</Outcome>\n  <DecidedAt>2026-11-25T16:20:00+08:00</DecidedAt>\n"
    "  <EffectiveTime>2026-12-01T00:00:00+08:00</EffectiveTime>"
)


def test_refused_agreement_decodes_with_its_reason():
    signing = TripartiteAgreementSigned.decode(edited(SIGNING, SIGNED_PART, REFUSED))
    assert signing.outcome == "refused"
    assert signing.refusal_reason == "零售用户未在规定期限内确认协议"
    assert signing.effective_time is None


@pytest.mark.parametrize("effective", ["", "<EffectiveTime></EffectiveTime>", "<EffectiveTime> </EffectiveTime>"])
def test_signed_without_effective_time_is_refused(effective):
    body = edited(SIGNING, "<EffectiveTime>2026-12-01T00:00:00+08:00</EffectiveTime>", effective)
    assert refused(TripartiteAgreementSigned, body) == (
        "TripartiteAgreementSigned: Value error, EffectiveTime is required when Outcome is signed"
    )


@pytest.mark.parametrize("reason", ["", "<RefusalReason/>", "<RefusalReason>  </RefusalReason>"])
def test_refused_without_reason_is_refused(reason):
    body = edited(SIGNING, SIGNED_PART, REFUSED.replace("<RefusalReason>零售用户未在规定期限内确认协议</RefusalReason>", reason))
    assert refused(TripartiteAgreementSigned, body) == (
        "TripartiteAgreementSigned: Value error, RefusalReason is required when Outcome is refused"
    )


def test_signed_with_a_refusal_reason_is_contradictory():
    body = edited(SIGNING, "</EffectiveTime>", "</EffectiveTime>\n  <RefusalReason>用户拒签</RefusalReason>")
    assert "RefusalReason must not be given when Outcome is signed" in refused(TripartiteAgreementSigned, body)


def test_refused_with_an_effective_time_is_contradictory():
    effective = "\n  <EffectiveTime>2026-12-01T00:00:00+08:00</EffectiveTime>"
    body = edited(SIGNING, SIGNED_PART, REFUSED.replace("\n  <RefusalReason>", effective + "\n  <RefusalReason>"))
    assert "EffectiveTime must not be given when Outcome is refused" in refused(TripartiteAgreementSigned, body)


def test_unknown_outcome_and_naive_effective_time_are_refused():
    assert "/TripartiteAgreementSigned/Outcome" in refused(
        TripartiteAgreementSigned, edited(SIGNING, "<Outcome>signed</Outcome>", "<Outcome>pending</Outcome>")
    )
    assert "/TripartiteAgreementSigned/EffectiveTime" in refused(
        TripartiteAgreementSigned, edited(SIGNING, "2026-12-01T00:00:00+08:00", "2026-12-01T00:00:00")
    )


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(example(ARCHIVE).rstrip()) - 1))
def test_truncated_archive_is_refused(cut):
    with pytest.raises(ContractViolation):
        SalesCompanyArchivePushed.decode(example(ARCHIVE).rstrip()[:cut])


# ---------------------------------------------------------------- SOAP requests to the trading center

REQUESTS = tc_requests()

#: What each request's envelope must say, as (path under the request element, text).
EXPECTED_TEXT = {
    "ArchiveFeedback": [
        ("t:ArchiveId", "SCA-2026-000317"),
        ("t:ArchiveRevision", "2"),
        ("t:CreditCode", "P42040113310410"),
        ("t:Decision", "rejected"),
        ("t:Reasons/t:Reason[1]/t:Code", "credit-code-length"),
        ("t:Reasons/t:Reason[1]/t:Message", "统一社会信用代码应为18位，收到15位"),
        ("t:Reasons/t:Reason[2]/t:Field", "LegalRepresentative"),
    ],
    "AgreementInfo": [
        ("t:AgreementNo", "TPA-2026-110001"),
        ("t:CustomerNo", "0731000012345"),
        ("t:PeriodStart", "2026-12-01"),
        ("t:PeriodEnd", "2027-11-30"),
        ("t:MeteringPoints/t:MeteringPoint[2]/t:MeteringPointId", "4301050001235"),
        ("t:MeteringPoints/t:MeteringPoint[2]/t:Category", "general_commercial_industrial"),
    ],
    "ArchivalResult": [
        ("t:AgreementNo", "TPA-2026-110001"),
        ("t:Decision", "archived"),
        ("t:ArchivedAt", "2026-11-26T09:30:00+08:00"),
        ("t:EffectiveTime", "2026-12-01T00:00:00+08:00"),
    ],
    "OwnershipRelation": [
        ("t:UserUnitId", "RU2026110001"),
        ("t:SalesCompanyCreditCode", "91350200776049653A"),
        ("t:EffectiveTime", "2026-12-01T00:00:00+08:00"),
        ("t:PeriodEnd", "2027-11-30"),
        ("t:MeteringPoints/t:MeteringPoint[1]/t:Category", "large_industrial"),
    ],
    "UserReviewResult": [
        ("t:Decision", "accepted"),
        ("t:PeriodStart", "2026-12-01"),
        ("t:Reasons", None),
    ],
}
NS = {"t": "urn:gridbus:tc:service:1"}


@pytest.fixture(scope="module")
def tc_client():
    return zeep.Client(str(WSDL))


@pytest.mark.parametrize("name", REQUESTS)
def test_request_knows_its_operation(name):
    request = REQUESTS[name]
    assert request.message_type == name == type(request).__name__
    assert request.operation == f"Receive{name}"


@pytest.mark.parametrize("name", REQUESTS)
def test_soap_request_fits_the_wsdl(tc_client, name):
    """zeep builds the envelope from our keyword arguments (no network): names and types match."""
    request = REQUESTS[name]
    envelope = tc_client.create_message(tc_client.service, request.operation, **request.to_soap())
    [wrapper] = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    assert wrapper.tag == f"{{urn:gridbus:tc:service:1}}{request.operation}Request"
    assert wrapper.findtext("t:MessageID", namespaces=NS) == "gb-tc-0001"
    assert wrapper.findtext("t:CorrelationID", namespaces=NS) == "RU2026110001"
    assert wrapper.findtext("t:SentAt", namespaces=NS) == "2026-11-26T09:30:00+08:00"
    for path, text in EXPECTED_TEXT[name]:
        [element] = wrapper.xpath(path, namespaces=NS)
        assert element.text == text, path


def test_soap_arguments_have_soap_types():
    arguments = REQUESTS["OwnershipRelation"].to_soap()
    assert type(arguments["PeriodStart"]) is date and arguments["EffectiveTime"].tzinfo is not None
    assert arguments["MeteringPoints"] == {
        "MeteringPoint": [
            {"MeteringPointId": "4301050001234", "Category": "large_industrial"},
            {"MeteringPointId": "4301050001235", "Category": "general_commercial_industrial"},
        ]
    }
    assert type(REQUESTS["ArchiveFeedback"].to_soap()["ArchiveRevision"]) is int


def test_no_soap_request_names_a_person():
    for request in REQUESTS.values():
        assert not {"UserName", "LegalRepresentative"} & set(request.to_soap())


@pytest.mark.parametrize(
    "model,decision",
    [(ArchiveFeedback, "rejected"), (UserReviewResult, "refused")],
)
def test_a_review_that_does_not_pass_needs_a_reason(model, decision):
    name = model.__name__
    fields = REQUESTS[name].model_dump() | {"decision": decision, "reasons": ()}
    with pytest.raises(ValidationError, match=f"a {decision} review needs at least one reason"):
        model(**fields)


def test_a_refused_archival_result_has_reasons_and_no_archival_time():
    fields = REQUESTS["ArchivalResult"].model_dump()
    why = {"code": "effective-time-outside-period", "field": "EffectiveTime", "message": "before the period"}
    refused = ArchivalResult(**(fields | {"decision": "refused", "archived_at": None, "reasons": [why]}))
    assert refused.to_soap()["Reasons"]["Reason"][0]["Code"] == "effective-time-outside-period"
    with pytest.raises(ValidationError, match="at least one reason"):
        ArchivalResult(**(fields | {"decision": "refused", "archived_at": None}))
    with pytest.raises(ValidationError, match="archived_at must be None"):
        ArchivalResult(**(fields | {"decision": "refused", "reasons": [why]}))
    with pytest.raises(ValidationError, match="needs archived_at"):
        ArchivalResult(**(fields | {"archived_at": None}))


def test_a_signing_result_may_say_how_long_the_agreement_is_valid():
    body = example(SIGNING).replace(b"</EffectiveTime>", b"</EffectiveTime>\n  <ValidUntil>2028-11-30</ValidUntil>")
    assert TripartiteAgreementSigned.decode(body).valid_until == date(2028, 11, 30)
    assert TripartiteAgreementSigned.decode(example(SIGNING)).valid_until is None
    with pytest.raises(ContractViolation):
        TripartiteAgreementSigned.decode(body.replace(b"2028-11-30", b"2028-11-30+08:00"))


def test_marketing_draft_review_is_strict():
    approved = json.loads(example("mkt.AgreementDraftReviewed.json"))
    assert mkt.AgreementDraftReviewed.decode(example("mkt.AgreementDraftReviewed.json")).outcome == "approved"
    rejected = approved | {"outcome": "rejected"}
    with pytest.raises(ContractViolation, match="rejection_reason is required"):
        mkt.AgreementDraftReviewed.decode(json.dumps(rejected).encode())
    reviewed = mkt.AgreementDraftReviewed.decode(
        json.dumps(rejected | {"rejection_reason": "负荷性质不符"}, ensure_ascii=False).encode())
    assert reviewed.rejection_reason == "负荷性质不符"
    with pytest.raises(ContractViolation, match="must not be given"):
        mkt.AgreementDraftReviewed.decode(json.dumps(approved | {"rejection_reason": "x"}).encode())
    with pytest.raises(ContractViolation):
        mkt.AgreementDraftReviewed.decode(json.dumps(approved | {"approved_by": "张三"}, ensure_ascii=False).encode())
    with pytest.raises(ContractViolation):
        mkt.AgreementDraftReviewed.decode(json.dumps(approved | {"decided_at": "2026-11-24T15:40:00"}).encode())


def test_soap_requests_refuse_extra_fields_and_naive_times():
    fields = REQUESTS["ArchivalResult"].model_dump()
    with pytest.raises(ValidationError, match="Extra inputs"):
        ArchivalResult(**fields, user_name="王小明")
    with pytest.raises(ValidationError, match="timezone"):
        ArchivalResult(**(fields | {"archived_at": datetime(2026, 11, 26, 9)}))


# ---------------------------------------------------------------- marketing JSON (retail market)

OUTBOUND = {
    mkt.ContractChangeRequired: mkt.ContractChangeRequired(
        sales_company_id="SCA-2026-000317",
        credit_code="91350200776049653A",
        archive_id="SCA-2026-000317",
        archive_revision=2,
        company_name="厦门鹭江新能售电有限公司",
        changed_fields=(
            mkt.FieldChange(field="address", old_value="厦门市思明区鹭江道98号", new_value="厦门市思明区鹭江道98号建设科技大厦17层"),
            mkt.FieldChange(field="registered_capital_10k_yuan", old_value="10000", new_value="20000"),
            mkt.FieldChange(field="short_name", old_value=None, new_value="鹭江新能"),
        ),
        required_at=NOW,
    ),
    mkt.RelationshipDissolutionRequired: mkt.RelationshipDissolutionRequired(
        user_unit_id="RU2026110001",
        customer_no="0731000012345",
        sales_company_credit_code="91350200776049653A",
        period_start=date(2026, 12, 1),
        period_end=date(2027, 11, 30),
        reason="sales_company_deregistered",
        effective_date=date(2027, 3, 1),
        required_at=NOW,
    ),
    mkt.AgreementDraftRequested: mkt.AgreementDraftRequested(
        agreement_no="TPA-2026-110001",
        user_unit_id="RU2026110001",
        customer_no="0731000012345",
        sales_company_credit_code="91350200776049653A",
        period_start=date(2026, 12, 1),
        period_end=date(2027, 11, 30),
        metering_points=(
            mkt.RetailMeteringPoint(metering_point_id="4301050001234", category="large_industrial"),
            mkt.RetailMeteringPoint(metering_point_id="4301050001236", category="residential"),
        ),
        requested_at=NOW,
    ),
    mkt.BillingSchemeAdjustment: mkt.BillingSchemeAdjustment(
        user_unit_id="RU2026110001",
        customer_no="0731000012345",
        sales_company_credit_code="91350200776049653A",
        agreement_no="TPA-2026-110001",
        effective_time=datetime(2026, 12, 1, tzinfo=CST),
        metering_points=(
            mkt.ConvertedMeteringPoint(metering_point_id="4301050001234", category="large_industrial"),
            mkt.ConvertedMeteringPoint(metering_point_id="4301050001235", category="general_commercial_industrial"),
        ),
        adjusted_at=NOW,
    ),
    mkt.OwnershipEstablished: mkt.OwnershipEstablished(
        user_unit_id="RU2026110001",
        customer_no="0731000012345",
        sales_company_credit_code="91350200776049653A",
        agreement_no="TPA-2026-110001",
        period_start=date(2026, 12, 1),
        period_end=date(2027, 11, 30),
        effective_time=datetime(2026, 12, 1, tzinfo=CST),
        established_at=NOW,
    ),
}


@pytest.mark.parametrize("model", OUTBOUND, ids=lambda m: m.__name__)
def test_retail_json_round_trips(model):
    message = OUTBOUND[model]
    body = message.encode()
    assert model.message_type == model.__name__ and model.content_type == "application/json"
    assert model.model_validate_json(body) == message
    document = json.loads(body)
    assert document["schema_version"] == "1"
    assert body == json.dumps(message.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize("model", OUTBOUND, ids=lambda m: m.__name__)
def test_retail_json_refuses_extra_fields(model):
    fields = OUTBOUND[model].model_dump()
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model(**fields, user_name="王小明")


def test_retail_json_writes_dates_times_and_chinese_as_is():
    document = json.loads(OUTBOUND[mkt.OwnershipEstablished].encode())
    assert document["period_start"] == "2026-12-01" and document["effective_time"] == "2026-12-01T00:00:00+08:00"
    assert "鹭江新能" in OUTBOUND[mkt.ContractChangeRequired].encode().decode("utf-8")


def test_converted_points_default_to_market_retail():
    [point, _] = json.loads(OUTBOUND[mkt.BillingSchemeAdjustment].encode())["metering_points"]
    assert point == {"metering_point_id": "4301050001234", "category": "large_industrial", "new_scheme": "market_retail"}
    with pytest.raises(ValidationError):
        mkt.ConvertedMeteringPoint(metering_point_id="1", category="large_industrial", new_scheme="tariff")


@pytest.mark.parametrize(
    "model,field",
    [
        (mkt.ContractChangeRequired, "changed_fields"),
        (mkt.BillingSchemeAdjustment, "metering_points"),
        (mkt.AgreementDraftRequested, "metering_points"),
    ],
)
def test_retail_json_needs_at_least_one_item(model, field):
    fields = OUTBOUND[model].model_dump() | {field: ()}
    with pytest.raises(ValidationError, match=field):
        model(**fields)


def test_retail_json_refuses_naive_times_and_other_reasons():
    fields = OUTBOUND[mkt.RelationshipDissolutionRequired].model_dump()
    with pytest.raises(ValidationError, match="timezone"):
        mkt.RelationshipDissolutionRequired(**(fields | {"required_at": datetime(2026, 11, 26, 9)}))
    with pytest.raises(ValidationError, match="reason"):
        mkt.RelationshipDissolutionRequired(**(fields | {"reason": "user_request"}))


def test_legal_representative_change_is_told_without_its_values():
    change = mkt.FieldChange(field="legal_representative", old_value="陈志明", new_value="林晓燕")
    assert (change.old_value, change.new_value) == (None, None)
    message = mkt.ContractChangeRequired(
        **(
            OUTBOUND[mkt.ContractChangeRequired].model_dump()
            | {"changed_fields": [{"field": "legal_representative", "old_value": "陈志明", "new_value": "林晓燕"}]}
        )
    )
    body = message.encode().decode("utf-8")
    assert "legal_representative" in body and "陈志明" not in body and "林晓燕" not in body


# ---------------------------------------------------------------- ReceiveMeterReadings in bulk

_DECIMALS = st.decimals(min_value=0, max_value=Decimal("99999999.9999"), places=4, allow_nan=False)
_CHUNK_READINGS = st.builds(
    ChunkReading,
    metering_point_id=st.from_regex(r"\A[0-9A-Z]{1,20}\Z"),
    meter_asset_no=st.text(st.characters(codec="utf-8", categories=("L", "N")), min_size=1, max_size=22),
    collected_at=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1),
                              timezones=st.sampled_from([timezone(timedelta(hours=8)), timezone.utc])),
    correction=st.booleans(),
    total=_DECIMALS,
    tariffs=st.tuples(_DECIMALS, _DECIMALS, _DECIMALS, _DECIMALS),
    multiplier=st.sampled_from([Decimal(1), Decimal("80"), Decimal("1.5"), Decimal("1E+3")]),
    qualities=st.lists(st.sampled_from(["2.6.1", "2.4.1", "2.6.2", "2.5.1"]), max_size=2).map(tuple),
)


def _chunk(readings) -> MeterReadingsChunk:
    return MeterReadingsChunk(
        message_id="gb-tc-0001", correlation_id="mdc-1", sent_at=datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc),
        batch_id="MDC-20261125-01", part_no=2, data_date=date(2026, 11, 25), chunk_no=1, chunk_count=3,
        readings=tuple(readings),
    )


def _infoset(element) -> tuple:
    """An element as XML means it, prefixes aside: its qualified name, attributes, text and
    children, recursively (whitespace-only text is formatting)."""
    text = (element.text or "").strip()
    return (element.tag, dict(element.attrib), text, tuple(_infoset(child) for child in element))


def _bulk_envelope(client, request):
    kwargs, element = request.to_soap_bulk()
    envelope = client.create_message(client.service, request.operation, **kwargs)
    token = soap_adapter._BULK_ELEMENT.set(element)
    try:
        envelope, _ = soap_adapter._BulkElement().egress(envelope, {}, None, None)
    finally:
        soap_adapter._BULK_ELEMENT.reset(token)
    return envelope


@settings(max_examples=60, deadline=None)
@given(readings=st.lists(_CHUNK_READINGS, min_size=1, max_size=6))
def test_the_bulk_meter_readings_envelope_is_zeeps_own(tc_client, readings):
    """The envelope the adapter sends from ``to_soap_bulk`` is the XML zeep serialises from
    ``to_soap`` (the same elements, names, attributes and texts: only the namespace prefix
    differs), and zeep reads the same values back from it."""
    request = _chunk(readings)
    slow = tc_client.create_message(tc_client.service, request.operation, **request.to_soap())
    fast = _bulk_envelope(tc_client, request)
    assert _infoset(fast) == _infoset(slow)
    [wrapper] = fast.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
    read = tc_client.get_element(wrapper.tag).parse(wrapper, tc_client.wsdl.types)
    got = read.MeterReadings.MeterReading
    assert [(g.MeteringPointId, g.CollectedAt, g.Correction, g.PAP_R, (g.PAP_R1, g.PAP_R2, g.PAP_R3, g.PAP_R4),
             g.Multiplier, tuple(g.Quality)) for g in got] == [
        (r.metering_point_id, r.collected_at, r.correction, r.total, r.tariffs, r.multiplier, r.qualities)
        for r in readings
    ]
