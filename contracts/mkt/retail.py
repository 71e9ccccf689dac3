"""What gridbus tells marketing in the retail electricity market (flows 5-8).

Routing keys on ``mkt.in`` (the route's target operation):

- ``contract-change.required``: ``ContractChangeRequired`` (flow 5)
- ``relationship-dissolution.required``: ``RelationshipDissolutionRequired`` (flow 5)
- ``agreement-draft.requested``: ``AgreementDraftRequested`` (flow 7)
- ``billing-scheme.adjust``: ``BillingSchemeAdjustment`` (flow 8)
- ``ownership.established``: ``OwnershipEstablished`` (flow 8)

Retail users and sales companies are named by their ids (customer number, credit code), never
by personal data: no user names, no legal representatives. Dates are ISO 8601 (``2026-12-01``);
a contract period runs from ``period_start`` to ``period_end``, both days included.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from gridbus.contracts.mkt.base import JsonOutbound, StrictModel
from gridbus.contracts.times import ChinaTime

#: Marketing's metering-point categories (大工业, 一般工商业, 居民, 农业).
MeteringCategory = Literal["large_industrial", "general_commercial_industrial", "residential", "agricultural"]

#: Archive fields whose values are personal data: a change to them is named, its values are not sent.
PERSONAL_FIELDS = frozenset({"legal_representative"})


class FieldChange(StrictModel):
    """One archive field whose trading-center value differs from marketing's (None: not given).

    For the fields in ``PERSONAL_FIELDS`` only the change is told: their values are never carried
    (both are set to None, whatever the mapping passed).
    """

    field: str
    old_value: str | None = None
    new_value: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_personal_values(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("field") in PERSONAL_FIELDS:
            return {**data, "old_value": None, "new_value": None}
        return data


class ContractChangeRequired(JsonOutbound):
    """A sales company's archive in the trading center differs from marketing's: the trading
    center's data wins, marketing must start a contract change (合同变更).

    sales_company_id: gridbus's stable id of the company (the archive id it was first accepted
    under), the same across renames, new archive ids and credit-code corrections.
    previous_credit_code: set when this change corrects the company's credit code (which
    ``changed_fields`` then names as ``credit_code`` too); ``credit_code`` is the new one.
    """

    message_type: ClassVar[str] = "ContractChangeRequired"

    sales_company_id: str
    credit_code: str
    previous_credit_code: str | None = None
    archive_id: str
    archive_revision: Annotated[int, Field(ge=1)]
    company_name: str | None = None
    changed_fields: Annotated[tuple[FieldChange, ...], Field(min_length=1)]
    required_at: ChinaTime


class RelationshipDissolutionRequired(JsonOutbound):
    """A sales company deregistered in the trading center still has this retail user bound for
    the period: marketing must dissolve the relationship (解除绑定关系).

    effective_date: the deregistration's effective date, when the archive gave one.
    """

    message_type: ClassVar[str] = "RelationshipDissolutionRequired"

    user_unit_id: str
    customer_no: str
    sales_company_credit_code: str
    period_start: date
    period_end: date
    reason: Literal["sales_company_deregistered"]
    effective_date: date | None = None
    required_at: ChinaTime


class RetailMeteringPoint(StrictModel):
    metering_point_id: str
    category: MeteringCategory


class AgreementDraftRequested(JsonOutbound):
    """A retail user passed review without a tripartite agreement (三方协议): marketing drafts one."""

    message_type: ClassVar[str] = "AgreementDraftRequested"

    agreement_no: str
    user_unit_id: str
    customer_no: str
    sales_company_credit_code: str
    period_start: date
    period_end: date
    metering_points: Annotated[tuple[RetailMeteringPoint, ...], Field(min_length=1)]
    requested_at: ChinaTime


class ConvertedMeteringPoint(StrictModel):
    """A metering point that becomes a market retail metering point (市场化零售计量点)."""

    metering_point_id: str
    category: MeteringCategory
    new_scheme: Literal["market_retail"] = "market_retail"


class BillingSchemeAdjustment(JsonOutbound):
    """Ownership establishment: from ``effective_time`` these points are billed as market retail
    (the user's large-industrial and general commercial/industrial points)."""

    message_type: ClassVar[str] = "BillingSchemeAdjustment"

    user_unit_id: str
    customer_no: str
    sales_company_credit_code: str
    agreement_no: str
    effective_time: ChinaTime
    metering_points: Annotated[tuple[ConvertedMeteringPoint, ...], Field(min_length=1)]
    adjusted_at: ChinaTime


class OwnershipEstablished(JsonOutbound):
    """The retail user belongs to the sales company for the period, from ``effective_time`` (归属关系建立)."""

    message_type: ClassVar[str] = "OwnershipEstablished"

    user_unit_id: str
    customer_no: str
    sales_company_credit_code: str
    agreement_no: str
    period_start: date
    period_end: date
    effective_time: ChinaTime
    established_at: ChinaTime
