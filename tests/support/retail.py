"""Trading-center messages of the retail market, built for tests, and a clock tests can move."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from lxml import etree

from gridbus.contracts.identifiers import complete_credit_code

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"
CHINA = timezone(timedelta(hours=8))

_ARCHIVE_NS = "urn:gridbus:tc:sales-company-archive:1"
_REVIEW_NS = "urn:gridbus:tc:user-unit-review:1"
_SIGNING_NS = "urn:gridbus:tc:tripartite-agreement:1"
_serial = itertools.count(1)


class Clock:
    """The worker's clock, moved by the test instead of by waiting."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def valid_credit_code(serial: int | None = None) -> str:
    """A unified social credit code that passes both checks, different for every serial."""
    serial = next(_serial) if serial is None else serial
    return complete_credit_code(f"91350200{77600000 + serial * 7919 % 10_000_000:08d}")


def unique(prefix: str) -> str:
    return f"{prefix}{datetime.now().strftime('%H%M%S')}{next(_serial):05d}"


def archive_xml(
    credit_code: str,
    *,
    archive_id: str,
    revision: int = 1,
    status: str = "active",
    name: str = "厦门鹭江新能售电有限公司",
    **elements: str,
) -> bytes:
    """The example archive with these values; ``elements`` replace other elements' text by name."""
    root = etree.fromstring((EXAMPLES / "tc.SalesCompanyArchivePushed.xml").read_bytes())
    values = {"ArchiveId": archive_id, "ArchiveRevision": str(revision), "CreditCode": credit_code,
              "Status": status, "Name": name, **elements}
    for element, text in values.items():
        node = root.find(f"{{{_ARCHIVE_NS}}}{element}")
        assert node is not None, element
        node.text = text
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def review_xml(
    user_unit_id: str,
    credit_code: str,
    *,
    period_start: date = date(2026, 12, 1),
    period_end: date = date(2027, 11, 30),
    points: tuple[tuple[str, str], ...] = (
        ("MP-LI-1", "large_industrial"), ("MP-GCI-1", "general_commercial_industrial"), ("MP-RES-1", "residential"),
    ),
    customer_no: str = "0731000012345",
    reviewed_at: datetime = datetime(2026, 11, 18, 14, 30, tzinfo=CHINA),
) -> bytes:
    e = _maker(_REVIEW_NS)
    root = e("UserUnitReviewPassed")
    for name, text in (("UserUnitId", user_unit_id), ("ReviewedAt", reviewed_at.isoformat()),
                       ("CustomerNo", customer_no), ("UserName", "长沙湘江精密铸造有限公司"),
                       ("SalesCompanyCreditCode", credit_code), ("PeriodStart", period_start.isoformat()),
                       ("PeriodEnd", period_end.isoformat())):
        root.append(e(name, text))
    container = e("MeteringPoints")
    for point_id, category in points:
        point = e("MeteringPoint")
        point.append(e("MeteringPointId", point_id))
        point.append(e("Category", category))
        container.append(point)
    root.append(container)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def signing_xml(
    agreement_no: str,
    user_unit_id: str,
    credit_code: str,
    *,
    outcome: str = "signed",
    decided_at: datetime,
    effective_time: datetime | None = None,
    refusal_reason: str | None = None,
    valid_until: date | None = None,
) -> bytes:
    e = _maker(_SIGNING_NS)
    root = e("TripartiteAgreementSigned")
    for name, text in (("AgreementNo", agreement_no), ("UserUnitId", user_unit_id),
                       ("SalesCompanyCreditCode", credit_code), ("Outcome", outcome),
                       ("DecidedAt", decided_at.isoformat())):
        root.append(e(name, text))
    if effective_time is not None:
        root.append(e("EffectiveTime", effective_time.isoformat()))
    if refusal_reason is not None:
        root.append(e("RefusalReason", refusal_reason))
    if valid_until is not None:
        root.append(e("ValidUntil", valid_until.isoformat()))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def draft_review_json(
    agreement_no: str,
    user_unit_id: str,
    credit_code: str,
    *,
    outcome: str = "approved",
    decided_at: datetime = datetime(2026, 11, 23, 9, 0, tzinfo=CHINA),
    rejection_reason: str | None = None,
) -> bytes:
    """Marketing's AgreementDraftReviewed: the draft approved, or rejected with a reason."""
    document = {"schema_version": "1", "agreement_no": agreement_no, "user_unit_id": user_unit_id,
                "sales_company_credit_code": credit_code, "outcome": outcome, "decided_at": decided_at.isoformat()}
    if rejection_reason is not None:
        document["rejection_reason"] = rejection_reason
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def _maker(namespace: str):
    def make(tag: str, text: str | None = None):
        element = etree.Element(f"{{{namespace}}}{tag}", nsmap={None: namespace})
        element.text = text
        return element

    return make


def tc_requests(message_id: str = "gb-tc-0001") -> dict:
    """One of each SOAP request gridbus sends the trading center, by class name, with the values of
    the retail examples (user unit RU2026110001, agreement TPA-2026-110001, sent 2026-11-26 09:30)."""
    from gridbus.contracts.tc import RetailMeteringPoint
    from gridbus.contracts.tc.soap import (
        AgreementInfo, ArchivalResult, ArchiveFeedback, OwnershipRelation, ReviewReason, UserReviewResult,
    )

    sent = datetime(2026, 11, 26, 9, 30, tzinfo=CHINA)
    effective = datetime(2026, 12, 1, tzinfo=CHINA)
    header = dict(message_id=message_id, correlation_id="RU2026110001", sent_at=sent)
    binding = dict(user_unit_id="RU2026110001", sales_company_credit_code="91350200776049653A")
    period = dict(period_start=date(2026, 12, 1), period_end=date(2027, 11, 30))
    points = (
        RetailMeteringPoint(metering_point_id="4301050001234", category="large_industrial"),
        RetailMeteringPoint(metering_point_id="4301050001235", category="general_commercial_industrial"),
    )
    return {
        "ArchiveFeedback": ArchiveFeedback(
            **header, archive_id="SCA-2026-000317", archive_revision=2, credit_code="P42040113310410",
            decision="rejected",
            reasons=(
                ReviewReason(code="credit-code-length", field="CreditCode", message="统一社会信用代码应为18位，收到15位"),
                ReviewReason(code="missing", field="LegalRepresentative", message="LegalRepresentative is required"),
            ),
        ),
        "AgreementInfo": AgreementInfo(
            **header, **binding, **period, agreement_no="TPA-2026-110001", customer_no="0731000012345",
            metering_points=points,
        ),
        "ArchivalResult": ArchivalResult(
            **header, **binding, agreement_no="TPA-2026-110001", archived_at=sent, effective_time=effective,
        ),
        "OwnershipRelation": OwnershipRelation(
            **header, **binding, **period, agreement_no="TPA-2026-110001", customer_no="0731000012345",
            effective_time=effective, metering_points=points,
        ),
        "UserReviewResult": UserReviewResult(**header, **binding, **period, decision="accepted"),
    }
