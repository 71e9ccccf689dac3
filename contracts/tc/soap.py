"""Requests gridbus makes to the trading center's SOAP service (``TradingCenterService.wsdl``).

Each request knows its WSDL operation and gives zeep its keyword arguments with ``to_soap()``:
element names exactly as in the WSDL (namespace ``urn:gridbus:tc:service:1``), datetimes
timezone-aware, dates as ``date``. ``MessageID`` is stable across retries: the trading center
applies a MessageID once. No request carries personal data (user names, legal representatives).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, Literal, Self

from lxml import etree
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridbus.contracts.canonical.payload import escape_text
from gridbus.contracts.soap import SoapRequest as _Request
from gridbus.contracts.tc.user_unit_review import RetailMeteringPoint
from gridbus.contracts.times import ChinaTime


class ReviewReason(BaseModel):
    """Why a review did not pass: a stable ``code``, the ``field`` concerned, a ``message`` for people."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    field: str
    message: str


def _reasons_given_when_not_passed(decision: str, reasons: tuple[ReviewReason, ...]) -> None:
    # The trading center's operators act on the reasons: a refusal without one tells them nothing.
    if decision != "accepted" and not reasons:
        raise ValueError(f"a {decision} review needs at least one reason")


def _reasons(reasons: tuple[ReviewReason, ...]) -> dict[str, Any]:
    return {"Reason": [{"Code": r.code, "Field": r.field, "Message": r.message} for r in reasons]}


def _metering_points(points: tuple[RetailMeteringPoint, ...]) -> dict[str, Any]:
    return {"MeteringPoint": [{"MeteringPointId": p.metering_point_id, "Category": p.category} for p in points]}


class ArchiveFeedback(_Request):
    """Operation ReceiveArchiveFeedback: the review result of one revision of a sales-company archive.

    reasons: why it was rejected (at least one when rejected); an accepted archive may carry notes.
    """

    message_type: ClassVar[str] = "ArchiveFeedback"
    operation: ClassVar[str] = "ReceiveArchiveFeedback"

    archive_id: str
    archive_revision: int = Field(ge=1)
    credit_code: str
    decision: Literal["accepted", "rejected"]
    reasons: tuple[ReviewReason, ...] = ()

    @model_validator(mode="after")
    def _rejection_has_reasons(self) -> Self:
        _reasons_given_when_not_passed(self.decision, self.reasons)
        return self

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "ArchiveId": self.archive_id,
            "ArchiveRevision": self.archive_revision,
            "CreditCode": self.credit_code,
            "Decision": self.decision,
            "Reasons": _reasons(self.reasons),
        }


class AgreementInfo(_Request):
    """Operation ReceiveAgreementInfo: an approved tripartite agreement, to be signed on the trading center."""

    message_type: ClassVar[str] = "AgreementInfo"
    operation: ClassVar[str] = "ReceiveAgreementInfo"

    agreement_no: str
    user_unit_id: str
    customer_no: str
    sales_company_credit_code: str
    period_start: date
    period_end: date
    metering_points: tuple[RetailMeteringPoint, ...] = Field(min_length=1)

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "AgreementNo": self.agreement_no,
            "UserUnitId": self.user_unit_id,
            "CustomerNo": self.customer_no,
            "SalesCompanyCreditCode": self.sales_company_credit_code,
            "PeriodStart": self.period_start,
            "PeriodEnd": self.period_end,
            "MeteringPoints": _metering_points(self.metering_points),
        }


class ArchivalResult(_Request):
    """Operation ReceiveArchivalResult: the signed agreement is archived (协议归档), or refused.

    refused: the signing result cannot be archived as it is (its effective time lies outside the
    contract period); ``archived_at`` is None and ``reasons`` say why (at least one). The binding
    still awaits a signing result the trading center corrects.
    """

    message_type: ClassVar[str] = "ArchivalResult"
    operation: ClassVar[str] = "ReceiveArchivalResult"

    agreement_no: str
    user_unit_id: str
    sales_company_credit_code: str
    decision: Literal["archived", "refused"] = "archived"
    archived_at: ChinaTime | None = None
    effective_time: ChinaTime
    reasons: tuple[ReviewReason, ...] = ()

    @model_validator(mode="after")
    def _archived_or_refused_with_reasons(self) -> Self:
        if self.decision == "archived" and self.archived_at is None:
            raise ValueError("an archived agreement needs archived_at")
        if self.decision == "refused" and self.archived_at is not None:
            raise ValueError("a refused agreement was not archived: archived_at must be None")
        _reasons_given_when_not_passed("accepted" if self.decision == "archived" else "refused", self.reasons)
        return self

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "AgreementNo": self.agreement_no,
            "UserUnitId": self.user_unit_id,
            "SalesCompanyCreditCode": self.sales_company_credit_code,
            "Decision": self.decision,
            "ArchivedAt": self.archived_at,
            "EffectiveTime": self.effective_time,
            "Reasons": _reasons(self.reasons),
        }


class OwnershipRelation(_Request):
    """Operation ReceiveOwnershipRelation: the ownership relation (归属关系) is established.

    metering_points: the user's points that became market retail metering points.
    """

    message_type: ClassVar[str] = "OwnershipRelation"
    operation: ClassVar[str] = "ReceiveOwnershipRelation"

    user_unit_id: str
    customer_no: str
    sales_company_credit_code: str
    agreement_no: str
    period_start: date
    period_end: date
    effective_time: ChinaTime
    metering_points: tuple[RetailMeteringPoint, ...] = Field(min_length=1)

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "UserUnitId": self.user_unit_id,
            "CustomerNo": self.customer_no,
            "SalesCompanyCreditCode": self.sales_company_credit_code,
            "AgreementNo": self.agreement_no,
            "PeriodStart": self.period_start,
            "PeriodEnd": self.period_end,
            "EffectiveTime": self.effective_time,
            "MeteringPoints": _metering_points(self.metering_points),
        }


class UserReviewResult(_Request):
    """Operation ReceiveUserReviewResult: gridbus's review result of a retail user unit.

    reasons: why it was refused (at least one when refused).
    """

    message_type: ClassVar[str] = "UserReviewResult"
    operation: ClassVar[str] = "ReceiveUserReviewResult"

    user_unit_id: str
    sales_company_credit_code: str
    period_start: date
    period_end: date
    decision: Literal["accepted", "refused"]
    reasons: tuple[ReviewReason, ...] = ()

    @model_validator(mode="after")
    def _refusal_has_reasons(self) -> Self:
        _reasons_given_when_not_passed(self.decision, self.reasons)
        return self

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "UserUnitId": self.user_unit_id,
            "SalesCompanyCreditCode": self.sales_company_credit_code,
            "PeriodStart": self.period_start,
            "PeriodEnd": self.period_end,
            "Decision": self.decision,
            "Reasons": _reasons(self.reasons),
        }


class ChunkReading(BaseModel):
    """One reading of a ``MeterReadingsChunk``: registers as exact decimals (kWh, secondary side)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metering_point_id: str
    meter_asset_no: str
    collected_at: ChinaTime
    correction: bool
    total: Decimal
    tariffs: tuple[Decimal, Decimal, Decimal, Decimal]
    multiplier: Decimal
    qualities: tuple[str, ...] = ()


class MeterReadingsChunk(_Request):
    """Operation ReceiveMeterReadings: daily frozen readings of market metering points, one chunk
    (``chunk_no`` of ``chunk_count``) of one batch part; each chunk has its own stable MessageID."""

    message_type: ClassVar[str] = "MeterReadingsChunk"
    operation: ClassVar[str] = "ReceiveMeterReadings"

    batch_id: str
    part_no: int = Field(ge=1)
    data_date: date
    chunk_no: int = Field(ge=1)
    chunk_count: int = Field(ge=1)
    readings: tuple[ChunkReading, ...] = Field(min_length=1)

    def to_soap(self) -> dict[str, Any]:
        return self._fields(self.readings)

    def to_soap_bulk(self) -> tuple[dict[str, Any], etree._Element]:
        """The request in two parts, because zeep takes about a millisecond per reading to
        serialise and a chunk holds hundreds: zeep's keyword arguments with the first reading
        only (so zeep still checks every field's type against the WSDL), and the whole
        ``MeterReadings`` element built here in one pass, which the adapter puts in place of
        zeep's. tests/unit/test_contracts_tc.py checks the two give the same envelope."""
        return self._fields(self.readings[:1]), meter_readings_element(self.readings)

    def _fields(self, readings: tuple[ChunkReading, ...]) -> dict[str, Any]:
        return {
            **self._header(),
            "BatchId": self.batch_id,
            "PartNo": self.part_no,
            "DataDate": self.data_date,
            "ChunkNo": self.chunk_no,
            "ChunkCount": self.chunk_count,
            "MeterReadings": {"MeterReading": [_reading(r) for r in readings]},
        }


#: The trading center's namespace (TradingCenterService.wsdl's targetNamespace, elementFormDefault qualified).
TC_NAMESPACE = "urn:gridbus:tc:service:1"


def meter_readings_element(readings: tuple[ChunkReading, ...]) -> etree._Element:
    """``MeterReadings`` with one ``MeterReading`` per reading, the values written as zeep writes
    them: decimals fixed-point (``{:f}``), the datetime ISO 8601 with ``Z`` for UTC, booleans
    ``true``/``false``. Written as text and parsed once (hundreds of readings a chunk: an
    element built node by node cost more than the rest of the call); the namespace is the
    element's default one, where zeep gives it a prefix: the same XML."""
    parts = [f'<MeterReadings xmlns="{TC_NAMESPACE}">']
    for r in readings:
        sharp, peak, flat, valley = r.tariffs
        qualities = "".join(f"<Quality>{escape_text(q)}</Quality>" for q in r.qualities) if r.qualities else ""
        parts.append(
            f"<MeterReading><MeteringPointId>{escape_text(r.metering_point_id)}</MeteringPointId>"
            f"<MeterAssetNo>{escape_text(r.meter_asset_no)}</MeterAssetNo>"
            f"<CollectedAt>{r.collected_at.isoformat().replace('+00:00', 'Z')}</CollectedAt>"
            f"<Correction>{'true' if r.correction else 'false'}</Correction>"
            f"<PAP_R>{r.total:f}</PAP_R><PAP_R1>{sharp:f}</PAP_R1><PAP_R2>{peak:f}</PAP_R2><PAP_R3>{flat:f}</PAP_R3>"
            f"<PAP_R4>{valley:f}</PAP_R4><Multiplier>{r.multiplier:f}</Multiplier>{qualities}</MeterReading>"
        )
    parts.append("</MeterReadings>")
    return etree.fromstring("".join(parts).encode("utf-8"), _TRUSTED)


#: What ``meter_readings_element`` parses is gridbus's own text, with no DOCTYPE; parsed without
#: entity resolution or network all the same.
_TRUSTED = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _reading(r: ChunkReading) -> dict[str, Any]:
    r1, r2, r3, r4 = r.tariffs
    return {
        "MeteringPointId": r.metering_point_id,
        "MeterAssetNo": r.meter_asset_no,
        "CollectedAt": r.collected_at,
        "Correction": r.correction,
        "PAP_R": r.total,
        "PAP_R1": r1,
        "PAP_R2": r2,
        "PAP_R3": r3,
        "PAP_R4": r4,
        "Multiplier": r.multiplier,
        "Quality": list(r.qualities),
    }


__all__ = [
    "AgreementInfo",
    "ChunkReading",
    "MeterReadingsChunk",
    "ArchivalResult",
    "ArchiveFeedback",
    "OwnershipRelation",
    "RetailMeteringPoint",
    "ReviewReason",
    "UserReviewResult",
]
