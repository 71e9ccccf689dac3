"""What the retail-market routes send, built from the message and the route's recorded decision
(``context.decision``). A mapping returns ``None`` when the decision gives it nothing to send.

To the trading center (SOAP): archive feedback, user review result (also when marketing rejects
the agreement draft), agreement information (once marketing approved the draft), archival
result, ownership relation. To marketing (JSON on ``mkt.in``): contract change
required, relationship dissolution required, agreement draft requested, billing-scheme
adjustment, ownership established.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Iterator

from gridbus.contracts.base import MappingContext
from gridbus.contracts.mkt import AgreementDraftReviewed
from gridbus.contracts.mkt.retail import (
    AgreementDraftRequested,
    BillingSchemeAdjustment,
    ContractChangeRequired,
    ConvertedMeteringPoint,
    FieldChange,
    OwnershipEstablished,
    RelationshipDissolutionRequired,
    RetailMeteringPoint as MarketingMeteringPoint,
)
from gridbus.contracts.tc import (
    RetailMeteringPoint,
    SalesCompanyArchivePushed,
    TripartiteAgreementSigned,
    UserUnitReviewPassed,
)
from gridbus.contracts.tc.soap import (
    AgreementInfo,
    ArchivalResult,
    ArchiveFeedback,
    OwnershipRelation,
    ReviewReason,
    UserReviewResult,
)
from gridbus.mappings.retail.bindings import AGREEMENT_REQUESTED, market_points


def _header(ctx: MappingContext) -> dict[str, Any]:
    return {"message_id": ctx.message_id, "correlation_id": ctx.correlation_id, "sent_at": ctx.now}


def _reasons(decision) -> tuple[ReviewReason, ...]:
    return tuple(ReviewReason(**r) for r in decision.get("reasons", ()))


def _binding(ctx: MappingContext) -> dict[str, Any] | None:
    return ctx.decision.get("binding")


# -- sales-company archives (flow 5) ------------------------------------------------------------------


def archive_feedback(archive: SalesCompanyArchivePushed, ctx: MappingContext) -> ArchiveFeedback:
    return ArchiveFeedback(
        **_header(ctx),
        archive_id=archive.archive_id,
        archive_revision=archive.archive_revision,
        credit_code=archive.credit_code,
        decision=ctx.decision["decision"],
        reasons=_reasons(ctx.decision),
    )


def contract_change(archive: SalesCompanyArchivePushed, ctx: MappingContext) -> ContractChangeRequired | None:
    changes = ctx.decision.get("contract_change")
    if not changes:
        return None
    return ContractChangeRequired(
        sales_company_id=ctx.decision["company_id"],
        credit_code=archive.credit_code,
        previous_credit_code=ctx.decision["previous_credit_code"],
        archive_id=archive.archive_id,
        archive_revision=archive.archive_revision,
        company_name=archive.name,
        changed_fields=tuple(FieldChange(**c) for c in changes),
        required_at=ctx.now,
    )


def dissolutions(archive: SalesCompanyArchivePushed, ctx: MappingContext) -> Iterator[tuple[str, dict]]:
    for binding in ctx.decision.get("dissolutions", ()):
        yield f"{binding['user_unit_id']}|{binding['period_start']}", binding


def dissolution(archive: SalesCompanyArchivePushed, ctx: MappingContext) -> RelationshipDissolutionRequired:
    binding = ctx.item
    return RelationshipDissolutionRequired(
        user_unit_id=binding["user_unit_id"],
        customer_no=binding["customer_no"],
        sales_company_credit_code=binding["credit_code"],
        period_start=date.fromisoformat(binding["period_start"]),
        period_end=date.fromisoformat(binding["period_end"]),
        reason="sales_company_deregistered",
        effective_date=archive.effective_date,
        required_at=ctx.now,
    )


# -- retail user review (flow 6) -------------------------------------------------------------------------


def review_result(review: UserUnitReviewPassed, ctx: MappingContext) -> UserReviewResult | None:
    if ctx.decision["decision"] not in ("accepted", "refused"):
        return None  # a repeat: the trading center has had its answer
    return UserReviewResult(
        **_header(ctx),
        user_unit_id=review.user_unit_id,
        sales_company_credit_code=review.sales_company_credit_code,
        period_start=review.period_start,
        period_end=review.period_end,
        decision=ctx.decision["decision"],
        reasons=_reasons(ctx.decision),
    )


def _agreement(binding: dict[str, Any]) -> dict[str, Any]:
    """The agreement to draft and sign: its number, the parties, the contract period."""
    return {
        "agreement_no": binding["agreement_no"],
        "user_unit_id": binding["user_unit_id"],
        "customer_no": binding["customer_no"],
        "sales_company_credit_code": binding["credit_code"],
        **_period(binding),
    }


def agreement_draft(review: UserUnitReviewPassed, ctx: MappingContext) -> AgreementDraftRequested | None:
    """Only when the review starts the signing sub-flow: not when a valid agreement covers the period."""
    if ctx.decision["decision"] != "accepted" or _binding(ctx)["state"] != AGREEMENT_REQUESTED:
        return None
    binding = _binding(ctx)
    return AgreementDraftRequested(
        **_agreement(binding),
        metering_points=tuple(MarketingMeteringPoint(**p) for p in binding["metering_points"]),
        requested_at=ctx.now,
    )


# -- tripartite agreement (flow 7): marketing's draft review, signing, archival ----------------------------


def agreement_info(review: AgreementDraftReviewed, ctx: MappingContext) -> AgreementInfo | None:
    """The approved agreement, to be signed on the trading center."""
    if ctx.decision["decision"] != "draft-approved":
        return None
    binding = _binding(ctx)
    return AgreementInfo(
        **_header(ctx),
        **_agreement(binding),
        metering_points=tuple(RetailMeteringPoint(**p) for p in binding["metering_points"]),
    )


def draft_rejection(review: AgreementDraftReviewed, ctx: MappingContext) -> UserReviewResult | None:
    """A draft marketing rejected: the trading center's user unit is refused after all, with the reason."""
    if ctx.decision["decision"] != "draft-rejected":
        return None
    binding = _binding(ctx)
    return UserReviewResult(
        **_header(ctx),
        user_unit_id=binding["user_unit_id"],
        sales_company_credit_code=review.sales_company_credit_code,
        **_period(binding),
        decision="refused",
        reasons=_reasons(ctx.decision),
    )


def archival_result(signing: TripartiteAgreementSigned, ctx: MappingContext) -> ArchivalResult | None:
    decision = ctx.decision["decision"]
    if decision not in ("signed", "effective-time-refused"):
        return None
    binding = _binding(ctx)
    archived = decision == "signed"
    return ArchivalResult(
        **_header(ctx),
        agreement_no=binding["agreement_no"],
        user_unit_id=binding["user_unit_id"],
        sales_company_credit_code=signing.sales_company_credit_code,
        decision="archived" if archived else "refused",
        archived_at=datetime.fromisoformat(binding["archived_at"]) if archived else None,
        effective_time=signing.effective_time,
        reasons=_reasons(ctx.decision),
    )


# -- ownership establishment (flow 8): after signing, or when its schedule falls due -----------------------


def _ownership(ctx: MappingContext) -> dict[str, Any] | None:
    return ctx.decision.get("ownership")


def _parties(binding: dict[str, Any]) -> dict[str, Any]:
    """Who the agreement binds and from when, as every ownership output names them."""
    return {
        "user_unit_id": binding["user_unit_id"],
        "customer_no": binding["customer_no"],
        "sales_company_credit_code": binding["credit_code"],
        "agreement_no": binding["agreement_no"],
        "effective_time": datetime.fromisoformat(binding["effective_time"]),
    }


def _period(binding: dict[str, Any]) -> dict[str, date]:
    return {
        "period_start": date.fromisoformat(binding["period_start"]),
        "period_end": date.fromisoformat(binding["period_end"]),
    }


def billing_adjustment(message, ctx: MappingContext) -> BillingSchemeAdjustment | None:
    binding = _ownership(ctx)
    if binding is None:
        return None
    return BillingSchemeAdjustment(
        **_parties(binding),
        metering_points=tuple(ConvertedMeteringPoint(**p) for p in market_points(binding)),
        adjusted_at=ctx.now,
    )


def ownership_established(message, ctx: MappingContext) -> OwnershipEstablished | None:
    binding = _ownership(ctx)
    if binding is None:
        return None
    return OwnershipEstablished(
        **_parties(binding),
        **_period(binding),
        established_at=datetime.fromisoformat(binding["established_at"]),
    )


def ownership_relation(message, ctx: MappingContext) -> OwnershipRelation | None:
    binding = _ownership(ctx)
    if binding is None:
        return None
    return OwnershipRelation(
        **_header(ctx),
        **_parties(binding),
        **_period(binding),
        metering_points=tuple(RetailMeteringPoint(**p) for p in market_points(binding)),
    )
