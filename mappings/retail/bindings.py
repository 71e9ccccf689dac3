"""Retail user review as a durable process (flows 6-8, seed 000 §1).

A binding is one retail user unit bound to one sales company for one contract period. It lives
in the store (kind ``binding``, key ``<user unit>|<period start>``, ref = the sales company's
stable id, which a corrected credit code does not change) and moves through these states, one
message at a time:

    review passed ─┬─> agreement-requested ──approved──> agreement-approved ──signed──> ownership-scheduled
                   │        └──rejected──> agreement-rejected     │   │                          │ due
                   │                                              │   └──(effective in < 15 days)──> ownership-established
                   │                                              └──refused──> agreement-refused
                   └──(a valid agreement covers the period)──> ownership-scheduled / ownership-established
    any holding state ──(sales company deregistered)──> dissolution-required

- **Review passed** (trading center's formal review of the user unit): refused when the sales
  company has no accepted archive or is deregistered, when the user already has another
  binding for an overlapping period (one sales company per contract period), when the period
  does not start on the first of a month after the review's (binding changes take effect from
  the next month), or when the user has no metering point that can join the market. Otherwise,
  if the user has no valid tripartite agreement with the company, the signing sub-flow (seed
  000 Fig. 2) starts with a draft request to marketing; if it has one (signed for an earlier
  period and valid until the new period's end), signing is skipped and ownership establishment
  starts from the period's first day. Either way the review result goes back to the trading center.
- **Draft approved** by marketing (drafting, review and approval happen there): the agreement
  information goes to the trading center for signing. Rejected: the binding ends, the period is
  free, and the trading center is told the review is refused.
- **Agreement signed** on the trading center's external system: gridbus archives it, syncs the
  archival result back, and starts ownership establishment at once when the agreement takes
  effect in less than 15 days, else schedules it for effective time minus 15 days (a durable
  schedule in the store, see ``contracts.state``). An effective time outside the contract period
  is refused back and the binding waits for the correction. Refused: the binding ends, the period is free.
- **Ownership establishment**: marketing converts the user's large-industrial and general
  commercial/industrial metering points to market retail billing (the others are untouched),
  is told the ownership is established, and the ownership relation goes to the trading center.

A repeated message (same content, new message id) finds the binding already past that step
and changes nothing.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Iterable

from gridbus.contracts.internal import OwnershipDue
from gridbus.contracts.mkt import AgreementDraftReviewed
from gridbus.contracts.metering_point import MARKET_POINT, METERING_POINT, MarketPointData, MeteringPointData
from gridbus.contracts.tc import TripartiteAgreementSigned, UserUnitReviewPassed
from gridbus.mappings.retail import COMPANY, company_by_code, reason
from gridbus.contracts.rules import DEFAULT_RULES, Rules
from gridbus.contracts.state import Decision, Record, Schedule, State
from gridbus.contracts.errors import UnknownReference
from gridbus.contracts.times import china_midnight
from gridbus.mappings.retail.periods import effective_time_problems, period_problems

KIND = "binding"
USER_UNIT = "user-unit"
COMPANY_BINDINGS = "company-bindings"

AGREEMENT_REQUESTED = "agreement-requested"
AGREEMENT_APPROVED = "agreement-approved"
AGREEMENT_REJECTED = "agreement-rejected"
AGREEMENT_REFUSED = "agreement-refused"
OWNERSHIP_SCHEDULED = "ownership-scheduled"
OWNERSHIP_ESTABLISHED = "ownership-established"
DISSOLUTION_REQUIRED = "dissolution-required"

#: States in which the binding holds its period: no other sales company may bind the user then.
HOLDING = frozenset({AGREEMENT_REQUESTED, AGREEMENT_APPROVED, OWNERSHIP_SCHEDULED, OWNERSHIP_ESTABLISHED})

#: States of a binding whose tripartite agreement is signed and archived.
SIGNED = frozenset({OWNERSHIP_SCHEDULED, OWNERSHIP_ESTABLISHED})

#: Ownership establishment starts this long before the agreement takes effect.
OWNERSHIP_LEAD = timedelta(days=15)

#: The internal route that a due ownership schedule is sent to.
OWNERSHIP_ROUTE = "gridbus.ownership-due"



def binding_key(user_unit_id: str, period_start: date | str) -> str:
    start = period_start.isoformat() if isinstance(period_start, date) else period_start
    return f"{user_unit_id}|{start}"


def agreement_no(user_unit_id: str, period_start: date) -> str:
    """The tripartite agreement's number, the same for every repeat of one review."""
    return f"TA{period_start:%Y%m}-{user_unit_id}"


def holding(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if r.data["state"] in HOLDING]


def trace_keys_of(binding: dict[str, Any]) -> tuple[str, ...]:
    return (binding["user_unit_id"], binding["credit_code"], binding["agreement_no"])


def market_points(binding: dict[str, Any]) -> list[dict[str, str]]:
    """The binding's metering points that become market retail metering points: as the review
    decided them under the configured rule (``market``), so later steps never decide it again."""
    chosen = binding.get("market_point_ids")
    if chosen is None:  # a binding decided before the review recorded its choice
        return [p for p in binding["metering_points"] if DEFAULT_RULES.market.eligible(p["category"])]
    return [p for p in binding["metering_points"] if p["metering_point_id"] in chosen]


# -- review passed ---------------------------------------------------------------------------------


def metering_points_of(
    review: UserUnitReviewPassed, state: State
) -> tuple[list[dict[str, str]], str | None, list[tuple[str, str]]]:
    """The user unit's metering points with their categories as marketing holds them.

    Marketing (the customer-service platform) is the system of record for metering points: where
    gridbus holds a point's master data (flow 10), its category is marketing's, whatever the
    trading center's message says, and a point marketing files under another customer is
    returned in ``foreign`` as (point, owner). A point gridbus holds nothing of keeps the
    category the trading center sent; the note (for the trace) says which points those are.
    """
    ids = [p.metering_point_id for p in review.metering_points]
    held = state.get_many(METERING_POINT, ids)
    points, from_message, foreign = [], [], []
    for p in review.metering_points:
        record = held.get(p.metering_point_id)
        data = MeteringPointData.from_data(record.data) if record is not None else MeteringPointData()
        if data.customer is not None and data.customer != review.customer_no:
            foreign.append((p.metering_point_id, data.customer))
        if data.category_code is None:
            from_message.append(p.metering_point_id)
        points.append({"metering_point_id": p.metering_point_id, "category": data.category_code or p.category})
    note = None
    if from_message:
        note = (
            f"categories of metering points {', '.join(from_message)} taken from the trading center's review: "
            "gridbus holds no master data of them from marketing yet"
        )
    return points, note, foreign



def claim_user(state: State, decision: Decision, user_unit_id: str, now: datetime) -> None:
    """Decisions about one user unit's bindings are serialised: each reads and rewrites the user
    unit's record, so of two made at once on the same user (competing workers), the second is
    refused and retried on the state the first left, and the one-company-per-period rule holds."""
    record = state.get(USER_UNIT, user_unit_id)
    decisions = (record.data["decisions"] if record else 0) + 1
    decision.put(USER_UNIT, user_unit_id, {"decisions": decisions, "last_decided_at": now.isoformat()})


def count_binding(state: State, decision: Decision, company_id: str) -> None:
    """A new binding bumps its sales company's binding count, which a deregistration reads: so a
    deregistration decided at the same moment as a new binding is refused and decided again
    with that binding in view, and no binding to a deregistered company slips through."""
    record = state.get(COMPANY_BINDINGS, company_id)
    decision.put(COMPANY_BINDINGS, company_id, {"bindings": (record.data["bindings"] if record else 0) + 1})


def decide_review(review: UserUnitReviewPassed, state: State, now: datetime, rules: Rules = DEFAULT_RULES) -> Decision:
    decision = Decision()
    user, code = review.user_unit_id, review.sales_company_credit_code
    claim_user(state, decision, user, now)
    key = binding_key(user, review.period_start)
    period = f"{review.period_start.isoformat()}..{review.period_end.isoformat()}"
    existing = state.find(KIND, key_prefix=f"{user}|")
    same = next((r for r in existing if r.key == key and r.data["credit_code"] == code and r.data["state"] in HOLDING), None)
    if same is not None:
        decision.result = {"decision": "repeat", "state": same.data["state"]}
        decision.change([user, code], f"review of {user} for {period} passed again: binding already {same.data['state']}")
        return decision

    problems = []
    company = company_by_code(state, code)
    if company is None:
        problems.append(
            reason("sales-company-unknown", "SalesCompanyCreditCode", f"no accepted archive of sales company {code}")
        )
    elif company.data["status"] == "deregistered":
        problems.append(
            reason("sales-company-deregistered", "SalesCompanyCreditCode", f"sales company {code} is deregistered")
        )
    for other in holding(existing):
        if _overlap(other.data, review.period_start, review.period_end):
            problems.append(
                reason(
                    "one-sales-company-per-period",
                    "PeriodStart",
                    f"user unit {user} is already bound to sales company {other.data['credit_code']} for "
                    f"{other.data['period_start']}..{other.data['period_end']} ({other.data['state']}); "
                    "one sales company per contract period",
                )
            )
    problems += period_problems(review, [r.data for r in existing if r.data["state"] == DISSOLUTION_REQUIRED], now)
    points, held_note, foreign = metering_points_of(review, state)
    market_ids = [p["metering_point_id"] for p in points if rules.market.eligible(p["category"])]
    if held_note:
        decision.change([user], held_note)
    for point_id, _owner in foreign:  # the other customer is not named to the trading center
        problems.append(
            reason(
                "metering-point-of-other-customer",
                "MeteringPoints",
                f"metering point {point_id} belongs to another customer than {review.customer_no} in marketing's data",
            )
        )
    if not market_ids:
        problems.append(
            reason(
                "no-market-metering-point",
                "MeteringPoints",
                "none of the user's metering points is of a category that may join the retail market "
                f"({', '.join(sorted(rules.market.codes))})",
            )
        )
    binding = {
        "user_unit_id": user,
        "customer_no": review.customer_no,
        "credit_code": code,
        "company_id": company.key if company is not None else None,
        "period_start": review.period_start.isoformat(),
        "period_end": review.period_end.isoformat(),
        "metering_points": points,
        "market_point_ids": market_ids,
        "agreement_no": agreement_no(user, review.period_start),
        "reviewed_at": review.reviewed_at.isoformat(),
    }
    if problems:
        decision.result = {"decision": "refused", "reasons": problems, "binding": binding}
        decision.change([user, code], f"binding of {user} to {code} for {period} refused: {', '.join(p['code'] for p in problems)}")
        return decision
    count_binding(state, decision, company.key)
    decision.result = {"decision": "accepted", "reasons": [], "binding": binding}
    covering = covering_agreement(existing, company.key, review.period_start, review.period_end)
    if covering is None:
        binding["state"] = AGREEMENT_REQUESTED
        decision.put(KIND, key, binding, ref=company.key)
        decision.change(
            trace_keys_of(binding),
            f"binding {key} to {code} for {period}: {AGREEMENT_REQUESTED} (agreement {binding['agreement_no']} "
            "to be drafted and approved by marketing, then signed on the trading center)",
        )
        return decision
    # The user already has a valid tripartite agreement with this company: no signing sub-flow.
    binding["agreement_no"] = covering.data["agreement_no"]
    binding["signing"] = "covered"
    binding["covering_binding"] = covering.key
    effective = china_midnight(review.period_start)
    binding["effective_time"] = effective.isoformat()
    what = start_ownership(decision, key, binding, effective, now)
    decision.put(KIND, key, binding, ref=company.key)
    decision.change(
        trace_keys_of(binding),
        f"binding {key} to {code} for {period}: agreement {binding['agreement_no']} (valid until "
        f"{valid_until(covering.data)}) already covers the period, no signing needed; {binding['state']} ({what})",
    )
    return decision


def valid_until(binding: dict[str, Any]) -> str:
    """The last valid day of the binding's tripartite agreement."""
    return binding.get("valid_until") or binding["period_end"]


def covering_agreement(existing: Iterable[Record], company_id: str, start: date, end: date) -> Record | None:
    """A signed agreement of the user with this company, of an earlier period, still valid on the
    new period's last day: the review's branch of seed 000 §1 (the user has a tripartite agreement)."""
    for record in existing:
        data = record.data
        if (data["state"] in SIGNED and data["company_id"] == company_id and data.get("signing") != "covered"
                and date.fromisoformat(data["period_end"]) < start and date.fromisoformat(valid_until(data)) >= end):
            return record
    return None


def start_ownership(decision: Decision, key: str, binding: dict[str, Any], effective: datetime, now: datetime) -> str:
    """The 15-day rule on a binding whose agreement is archived: ownership establishment at once
    when ``effective`` is less than 15 days away, else a schedule for effective minus 15 days.
    Sets the binding's state and the decision's result; says what it did, for the journal."""
    due = effective - OWNERSHIP_LEAD
    if due <= now:
        binding["state"] = OWNERSHIP_ESTABLISHED
        binding["established_at"] = now.isoformat()
        put_market_points(decision, binding)
        decision.result["ownership"] = binding
        return f"takes effect {effective.isoformat()}, less than 15 days away: ownership established"
    binding["state"] = OWNERSHIP_SCHEDULED
    binding["ownership_due_at"] = due.isoformat()
    decision.schedules.append(
        Schedule(
            route=OWNERSHIP_ROUTE,
            key=key,
            due_at=due,
            payload={
                "schema_version": "1",
                "user_unit_id": binding["user_unit_id"],
                "period_start": binding["period_start"],
                "agreement_no": binding["agreement_no"],
                "due_at": due.isoformat(),
            },
            trace_keys=trace_keys_of(binding),
        )
    )
    return f"takes effect {effective.isoformat()}: ownership establishment scheduled for {due.isoformat()}"


def awaiting_binding(state: State, user: str, agreement: str, credit_code: str) -> Record:
    """The binding whose own agreement is ``agreement``, with the company of ``credit_code``
    (also after a code correction); ``UnknownReference`` when there is none."""
    record = next(
        (r for r in state.find(KIND, key_prefix=f"{user}|")
         if r.data["agreement_no"] == agreement and r.data.get("signing") != "covered"),
        None,
    )
    if record is None:
        raise UnknownReference(f"no binding of user unit {user} awaits tripartite agreement {agreement}")
    company = company_by_code(state, credit_code)
    if record.data["credit_code"] != credit_code and (company is None or company.key != record.data["company_id"]):
        raise UnknownReference(
            f"agreement {agreement} binds user unit {user} to sales company {record.data['credit_code']}, "
            f"not {credit_code}"
        )
    return record


# -- agreement draft approved or rejected by marketing ---------------------------------------------------


def with_current_code(state: State, binding: dict[str, Any]) -> dict[str, Any]:
    """The binding as it goes on: the trading center wins, so the credit code it carries out is its
    sales company's code now. A binding names its company by the company's stable id; a code
    corrected since the review moves with the company (the code the review named is kept as
    ``reviewed_credit_code``), and every later output and market point names the corrected one."""
    company = state.get(COMPANY, binding["company_id"]) if binding.get("company_id") else None
    if company is None or company.data["credit_code"] == binding["credit_code"]:
        return binding
    return {
        **binding,
        "credit_code": company.data["credit_code"],
        "reviewed_credit_code": binding.get("reviewed_credit_code", binding["credit_code"]),
    }


def decide_draft_review(review: AgreementDraftReviewed, state: State, now: datetime) -> Decision:
    """Marketing drafted, reviewed and approved the agreement (seed 000 Fig. 2): only now does it
    go to the trading center for signing. A rejected draft ends the binding, the period is free."""
    decision = Decision()
    user = review.user_unit_id
    claim_user(state, decision, user, now)
    record = awaiting_binding(state, user, review.agreement_no, review.sales_company_credit_code)
    binding = with_current_code(state, dict(record.data))
    if binding["state"] != AGREEMENT_REQUESTED:
        decision.result = {"decision": "repeat", "state": binding["state"]}
        decision.change(
            trace_keys_of(binding), f"draft review of {review.agreement_no} again: binding already {binding['state']}"
        )
        return decision
    if review.outcome == "rejected":
        binding["state"] = AGREEMENT_REJECTED
        binding["rejection_reason"] = review.rejection_reason
        decision.result = {
            "decision": "draft-rejected",
            "binding": binding,
            "reasons": [reason(
                "agreement-draft-rejected", "AgreementNo",
                f"marketing rejected the draft of agreement {review.agreement_no}: {review.rejection_reason}",
            )],
        }
    else:
        binding["state"] = AGREEMENT_APPROVED
        binding["approved_at"] = review.decided_at.isoformat()
        decision.result = {"decision": "draft-approved", "binding": binding}
    decision.put(KIND, record.key, binding, ref=binding["company_id"])
    then = "sent to the trading center for signing" if binding["state"] == AGREEMENT_APPROVED else "the period is free"
    decision.change(trace_keys_of(binding), f"binding {record.key}: {AGREEMENT_REQUESTED} -> {binding['state']} "
                                            f"(draft {review.outcome} by marketing; {then})")
    return decision


# -- agreement signed or refused -----------------------------------------------------------------------


def decide_signing(signing: TripartiteAgreementSigned, state: State, now: datetime) -> Decision:
    decision = Decision()
    user = signing.user_unit_id
    claim_user(state, decision, user, now)
    record = awaiting_binding(state, user, signing.agreement_no, signing.sales_company_credit_code)
    binding = with_current_code(state, dict(record.data))
    if binding["state"] == AGREEMENT_REQUESTED:
        raise UnknownReference(
            f"agreement {signing.agreement_no} was not sent for signing: marketing has not approved its draft"
        )
    if binding["state"] != AGREEMENT_APPROVED:
        decision.result = {"decision": "repeat", "state": binding["state"]}
        decision.change(trace_keys_of(binding), f"signing result for {signing.agreement_no} again: binding already {binding['state']}")
        return decision
    if signing.outcome == "refused":
        binding["state"] = AGREEMENT_REFUSED
        binding["refusal_reason"] = signing.refusal_reason
        decision.put(KIND, record.key, binding, ref=binding["company_id"])
        decision.result = {"decision": "refused", "binding": binding}
        decision.change(
            trace_keys_of(binding),
            f"binding {record.key}: {AGREEMENT_APPROVED} -> {AGREEMENT_REFUSED} (agreement refused)",
        )
        return decision

    problems = effective_time_problems(signing, binding)
    if problems:  # the binding still awaits a signing result the trading center corrects
        decision.result = {"decision": "effective-time-refused", "reasons": problems, "binding": binding}
        codes = ", ".join(p["code"] for p in problems)
        decision.change(
            trace_keys_of(binding),
            f"signing result for {signing.agreement_no} refused: {codes}; binding stays {binding['state']}",
        )
        return decision
    effective = signing.effective_time
    binding["effective_time"] = effective.isoformat()
    binding["signed_at"] = signing.decided_at.isoformat()
    binding["archived_at"] = now.isoformat()
    if signing.valid_until is not None:
        binding["valid_until"] = signing.valid_until.isoformat()
    decision.result = {"decision": "signed", "binding": binding}
    what = start_ownership(decision, record.key, binding, effective, now)
    decision.put(KIND, record.key, binding, ref=binding["company_id"])
    decision.change(trace_keys_of(binding), f"binding {record.key}: {AGREEMENT_APPROVED} -> {binding['state']} "
                                            f"(agreement archived; {what})")
    return decision


# -- ownership due ------------------------------------------------------------------------------------


def decide_ownership_due(due: OwnershipDue, state: State, now: datetime) -> Decision:
    decision = Decision()
    key = binding_key(due.user_unit_id, due.period_start)
    record = state.get(KIND, key)
    if record is None:
        raise UnknownReference(f"ownership of binding {key} fell due, but no such binding is held")
    claim_user(state, decision, due.user_unit_id, now)
    binding = with_current_code(state, dict(record.data))
    if binding["state"] != OWNERSHIP_SCHEDULED or binding["agreement_no"] != due.agreement_no:
        decision.result = {"decision": "skipped", "state": binding["state"]}
        decision.change(trace_keys_of(binding), f"ownership of {key} fell due; nothing to do: binding is {binding['state']}")
        return decision
    binding["state"] = OWNERSHIP_ESTABLISHED
    binding["established_at"] = now.isoformat()
    put_market_points(decision, binding)
    decision.put(KIND, key, binding, ref=binding["company_id"])
    decision.result = {"decision": "established", "binding": binding, "ownership": binding}
    decision.change(trace_keys_of(binding), f"binding {key}: {OWNERSHIP_SCHEDULED} -> {OWNERSHIP_ESTABLISHED} (schedule fell due)")
    return decision


# -- market points, for the readings flow ---------------------------------------------------------------


def put_market_points(decision: Decision, binding: dict[str, Any]) -> None:
    """Ownership established: each market metering point of the binding is in the retail market
    from the agreement's effective time (kind ``market-point``), which tells the readings flow
    (flow 9) whose daily readings go to the trading center."""
    since = datetime.fromisoformat(binding["effective_time"])
    for point in market_points(binding):
        data = MarketPointData(since, binding["user_unit_id"], binding["credit_code"])
        decision.put(MARKET_POINT, point["metering_point_id"], data.to_data(), ref=binding["user_unit_id"])


# -- trace keys of the messages -------------------------------------------------------------------------


def review_trace_keys(review: UserUnitReviewPassed) -> tuple[str, ...]:
    return (review.user_unit_id, review.sales_company_credit_code)


def draft_trace_keys(review: AgreementDraftReviewed) -> tuple[str, ...]:
    return (review.user_unit_id, review.sales_company_credit_code, review.agreement_no)


def signing_trace_keys(signing: TripartiteAgreementSigned) -> tuple[str, ...]:
    return (signing.user_unit_id, signing.sales_company_credit_code, signing.agreement_no)


def due_trace_keys(due: OwnershipDue) -> tuple[str, ...]:
    return (due.user_unit_id, due.agreement_no)


def _overlap(binding: dict[str, Any], start: date, end: date) -> bool:
    return date.fromisoformat(binding["period_start"]) <= end and start <= date.fromisoformat(binding["period_end"])
