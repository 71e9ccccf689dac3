"""Retail electricity market (售电市场), flows 5-8: trading center <-> gridbus <-> marketing.

The signing sub-flow runs in the seed's order (Fig. 2): the review asks marketing for a draft,
marketing's approval (``mkt.agreement-draft-reviewed``) sends it to the trading center, whose
signing result is archived and starts ownership establishment.

Each route decides on the durable state in the store (``Route.decide``) and then delivers what
the decision calls for; the ownership schedule falls due as a message of the internal route
``gridbus.ownership-due``. Every message is journalled under its business keys (credit code,
user unit, agreement) for ``gridbus trace``.
"""

from __future__ import annotations

from gridbus.contracts.internal import OwnershipDue
from gridbus.contracts.mkt import AgreementDraftReviewed
from gridbus.contracts.tc import SalesCompanyArchivePushed, TripartiteAgreementSigned, UserUnitReviewPassed
from gridbus.mappings.retail import archive_review, bindings, events, outputs
from gridbus.routes.model import INTERNAL, RetryPolicy, Route, Source, Step, Supersession, Target

#: The trading center's SOAP service has maintenance windows too: 8 attempts, 5 s doubling to 10 min.
RETRY = RetryPolicy(attempts=8, first_delay_s=5, max_delay_s=600)

EVENTS = Target("events")


def archive_id(archive: SalesCompanyArchivePushed) -> str:
    return archive.archive_id


def archive_revision(archive: SalesCompanyArchivePushed) -> int:
    return archive.archive_revision


SALES_COMPANY_ARCHIVE_PUSHED = Route(
    name="tc.sales-company-archive-pushed",
    source=Source(system="tc", routing_key="sales-company.archive-pushed"),
    contract=SalesCompanyArchivePushed,
    decide=archive_review.decide,
    steps=(
        Step("tc-feedback", outputs.archive_feedback, Target("tc", "ReceiveArchiveFeedback")),
        Step("mkt-contract-change", outputs.contract_change, Target("mkt", "contract-change.required")),
        Step(
            "mkt-dissolution",
            outputs.dissolution,
            Target("mkt", "relationship-dissolution.required"),
            each=outputs.dissolutions,
        ),
        Step("event", events.sales_company, EVENTS),
        Step("event-dissolution", events.dissolved_binding, EVENTS, each=outputs.dissolutions),
    ),
    retry=RETRY,
    # A revision of an archive that arrives after a newer one is not applied.
    supersession=Supersession(key=archive_id, revision=archive_revision),
    trace_keys=archive_review.trace_keys,
)

#: Ownership establishment (flow 8), the same whether it starts at signing or when scheduled.
OWNERSHIP_STEPS = (
    Step("mkt-billing-scheme", outputs.billing_adjustment, Target("mkt", "billing-scheme.adjust")),
    Step("mkt-ownership", outputs.ownership_established, Target("mkt", "ownership.established")),
    Step("tc-ownership", outputs.ownership_relation, Target("tc", "ReceiveOwnershipRelation")),
)

USER_UNIT_REVIEW_PASSED = Route(
    name="tc.user-unit-review-passed",
    source=Source(system="tc", routing_key="user-unit.review-passed"),
    contract=UserUnitReviewPassed,
    decide=bindings.decide_review,
    steps=(
        Step("tc-review-result", outputs.review_result, Target("tc", "ReceiveUserReviewResult")),
        Step("mkt-agreement-draft", outputs.agreement_draft, Target("mkt", "agreement-draft.requested")),
        # a user whose valid agreement covers the period skips signing: ownership as after a signing
        *OWNERSHIP_STEPS,
        Step("event", events.binding, EVENTS),
    ),
    retry=RETRY,
    trace_keys=bindings.review_trace_keys,
)

AGREEMENT_DRAFT_REVIEWED = Route(
    name="mkt.agreement-draft-reviewed",
    source=Source(system="mkt", routing_key="agreement-draft.reviewed"),
    contract=AgreementDraftReviewed,
    decide=bindings.decide_draft_review,
    steps=(
        Step("tc-agreement-info", outputs.agreement_info, Target("tc", "ReceiveAgreementInfo")),
        Step("tc-review-result", outputs.draft_rejection, Target("tc", "ReceiveUserReviewResult")),
        Step("event", events.binding, EVENTS),
    ),
    retry=RETRY,
    trace_keys=bindings.draft_trace_keys,
)

TRIPARTITE_AGREEMENT_SIGNED = Route(
    name="tc.tripartite-agreement-signed",
    source=Source(system="tc", routing_key="tripartite-agreement.signed"),
    contract=TripartiteAgreementSigned,
    decide=bindings.decide_signing,
    steps=(
        Step("tc-archival-result", outputs.archival_result, Target("tc", "ReceiveArchivalResult")),
        *OWNERSHIP_STEPS,
        Step("event", events.binding, EVENTS),
    ),
    retry=RETRY,
    trace_keys=bindings.signing_trace_keys,
)

OWNERSHIP_DUE = Route(
    name=bindings.OWNERSHIP_ROUTE,
    source=Source(system=INTERNAL, routing_key="ownership.due"),
    contract=OwnershipDue,
    decide=bindings.decide_ownership_due,
    steps=(*OWNERSHIP_STEPS, Step("event", events.binding, EVENTS)),
    retry=RETRY,
    trace_keys=bindings.due_trace_keys,
)

ROUTES = (
    SALES_COMPANY_ARCHIVE_PUSHED,
    USER_UNIT_REVIEW_PASSED,
    AGREEMENT_DRAFT_REVIEWED,
    TRIPARTITE_AGREEMENT_SIGNED,
    OWNERSHIP_DUE,
)
