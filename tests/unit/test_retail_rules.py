"""The retail market's rules, decided on a real (in-memory) store: archive review, trading center
wins, deregistration, and the binding process with its 15-day rule."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from gridbus.contracts.internal import OwnershipDue
from gridbus.contracts.mkt import AgreementDraftReviewed
from gridbus.contracts.tc import SalesCompanyArchivePushed, TripartiteAgreementSigned, UserUnitReviewPassed
from gridbus.mappings.retail import archive_review, bindings, periods
from tests.support.retail import CHINA, archive_xml, draft_review_json, review_xml, signing_xml, valid_credit_code
from gridbus.contracts.errors import UnknownReference
from gridbus.workers.store import Store

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA)


@pytest.fixture
def store():
    s = Store("sqlite:///:memory:")
    yield s
    s.close()


def decide(store, rule, message, message_id, now=NOW):
    state = store.state.view()
    decision = rule(message, state, now)
    assert store.state.commit_decision("test", message_id, decision, state.read, now)
    return decision


def archive(code, **kwargs):
    return SalesCompanyArchivePushed.decode(archive_xml(code, **kwargs))


def review(user, code, **kwargs):
    return UserUnitReviewPassed.decode(review_xml(user, code, **kwargs))


def signing(user, code, days: float | None = None, outcome="signed", agreement=None):
    effective = NOW + timedelta(days=days) if days is not None else None
    return TripartiteAgreementSigned.decode(signing_xml(
        agreement or f"TA202612-{user}", user, code, outcome=outcome, decided_at=NOW, effective_time=effective,
        refusal_reason="用户未签字" if outcome == "refused" else None))


def approved(user, code, outcome="approved", agreement=None):
    return AgreementDraftReviewed.decode(draft_review_json(
        agreement or f"TA202612-{user}", user, code, outcome=outcome,
        rejection_reason="负荷性质与申请不符" if outcome == "rejected" else None))


def requested(store, user, code, message_id, **kwargs):
    """The review accepted and marketing's draft approved: the agreement awaits signing."""
    decide(store, bindings.decide_review, review(user, code, **kwargs), message_id)
    return decide(store, bindings.decide_draft_review, approved(user, code), f"{message_id}-approved")


# -- archive review --------------------------------------------------------------------------------


def test_a_complete_valid_archive_has_no_problems():
    assert archive_review.field_problems(archive(valid_credit_code(), archive_id="A"), NOW.date()) == []


def test_every_problem_is_reported_with_its_field():
    body = archive_xml("P42040113310410", archive_id="A", Address="  ", RegisteredCapital="0",
                       EstablishedOn="2027-01-01", EffectiveDate="2026-12-01")
    problems = archive_review.field_problems(SalesCompanyArchivePushed.decode(body), NOW.date())
    assert [(p["code"], p["field"]) for p in problems] == [
        ("missing", "Address"),
        ("credit-code-length", "CreditCode"),
        ("date-in-future", "EstablishedOn"),
        ("date-order", "EffectiveDate"),
        ("capital-not-positive", "RegisteredCapital"),
    ]


def test_a_sales_company_must_be_an_enterprise():
    from gridbus.contracts.identifiers import complete_credit_code

    individual = complete_credit_code("9235020077604965")  # a valid code of an individual business (个体工商户)
    problems = archive_review.field_problems(archive(individual, archive_id="A"), NOW.date())
    assert [(p["code"], p["field"]) for p in problems] == [("credit-code-not-enterprise", "CreditCode")]


def test_an_implausible_capital_is_named():
    problems = archive_review.field_problems(archive(valid_credit_code(), archive_id="A", RegisteredCapital="20000000"),
                                             NOW.date())
    assert [p["code"] for p in problems] == ["capital-implausible"]


def company_record(store, archive_id):
    return store.state.get_record("sales-company", archive_id)


def test_trading_center_wins_and_names_the_changed_fields(store):
    code = valid_credit_code()
    first = decide(store, archive_review.decide, archive(code, archive_id="A"), "m1")
    assert first.result["company"] == "created" and first.result["contract_change"] == []
    second = decide(store, archive_review.decide, archive(code, archive_id="A", revision=2, ShortName="鹭江"), "m2")
    assert second.result["contract_change"] == [{"field": "short_name", "old_value": "鹭江新能", "new_value": "鹭江"}]
    assert company_record(store, "A").data["fields"]["short_name"] == "鹭江"
    same = decide(store, archive_review.decide, archive(code, archive_id="A", revision=3, ShortName="鹭江"), "m3")
    assert same.result["company"] == "unchanged" and same.result["contract_change"] == []


def test_a_corrected_credit_code_is_a_change_of_the_same_company(store):
    """The trading center corrects a company's code under the same archive id: one company, its
    code replaced, the correction named to marketing, and its bindings still found by the new code."""
    old, new = valid_credit_code(), valid_credit_code()
    decide(store, archive_review.decide, archive(old, archive_id="A"), "m1")
    requested(store, "U1", old, "r1")
    corrected = decide(store, archive_review.decide, archive(new, archive_id="A", revision=2), "m2").result
    assert (corrected["company"], corrected["company_id"], corrected["previous_credit_code"]) == ("changed", "A", old)
    assert corrected["contract_change"] == [{"field": "credit_code", "old_value": old, "new_value": new}]
    [company] = store.state.find_records("sales-company")
    assert (company.key, company.ref, company.data["credit_code"]) == ("A", new, new)
    # the old code names no company any more; the new one names the same company and its binding
    assert [r["code"] for r in decide(store, bindings.decide_review, review("U2", old), "r2").result["reasons"]] == [
        "sales-company-unknown"]
    signed = decide(store, bindings.decide_signing, signing("U1", new, 30), "s1")
    assert signed.result["decision"] == "signed"
    deregistered = decide(store, archive_review.decide, archive(new, archive_id="A", revision=3, status="deregistered"),
                          "m3").result
    assert [b["user_unit_id"] for b in deregistered["dissolutions"]] == ["U1"]


def test_after_a_code_correction_the_binding_goes_on_under_the_corrected_code(store):
    """A binding reviewed under the old code: its signing, ownership and market points name the
    company's code now, whichever code the trading center's signing result quotes."""
    from gridbus.contracts.metering_point import MARKET_POINT

    old, new = valid_credit_code(), valid_credit_code()
    decide(store, archive_review.decide, archive(old, archive_id="A"), "m1")
    requested(store, "U1", old, "r1")
    decide(store, archive_review.decide, archive(new, archive_id="A", revision=2), "m2")
    signed = decide(store, bindings.decide_signing, signing("U1", old, 8), "s1")
    assert signed.result["decision"] == "signed"
    binding = signed.result["binding"]
    assert (binding["state"], binding["credit_code"], binding["reviewed_credit_code"]) == (
        bindings.OWNERSHIP_ESTABLISHED, new, old)
    [stored] = store.state.find_records(bindings.KIND, key_prefix="U1|")
    assert stored.data["credit_code"] == new
    points = store.state.get_records(MARKET_POINT, ["MP-LI-1", "MP-GCI-1"])
    assert {r.data["credit_code"] for r in points.values()} == {new}


def test_a_renamed_company_under_a_new_archive_id_is_the_same_company(store):
    code = valid_credit_code()
    decide(store, archive_review.decide, archive(code, archive_id="A"), "m1")
    renamed = decide(store, archive_review.decide, archive(code, archive_id="B", name="厦门鹭江新能源售电有限公司"), "m2")
    assert (renamed.result["decision"], renamed.result["company"], renamed.result["company_id"]) == (
        "accepted", "changed", "A")
    assert renamed.result["contract_change"] == [
        {"field": "name", "old_value": "厦门鹭江新能售电有限公司", "new_value": "厦门鹭江新能源售电有限公司"}]
    [company] = store.state.find_records("sales-company")
    assert company.data["archive_ids"] == ["A", "B"] and company.data["name"] == "厦门鹭江新能源售电有限公司"
    # a later revision under either archive id is an archive of that one company
    again = decide(store, archive_review.decide, archive(code, archive_id="A", revision=2, ShortName="鹭江"), "m3")
    assert again.result["company_id"] == "A" and len(store.state.find_records("sales-company")) == 1


def test_a_code_correction_onto_another_companys_code_is_refused_and_changes_nothing(store):
    mine, theirs = valid_credit_code(), valid_credit_code()
    decide(store, archive_review.decide, archive(mine, archive_id="A"), "m1")
    decide(store, archive_review.decide, archive(theirs, archive_id="B", name="另一家售电有限公司"), "m2")
    claim = decide(store, archive_review.decide, archive(theirs, archive_id="A", revision=2), "m3")
    assert claim.result["decision"] == "rejected"
    assert [r["code"] for r in claim.result["reasons"]] == ["credit-code-claimed"]
    assert "另一家售电有限公司" in claim.result["reasons"][0]["message"]
    assert company_record(store, "A").data["credit_code"] == mine


# -- the binding process --------------------------------------------------------------------------------


def bound(store, code, user, days, serial=[0]):
    serial[0] += 1
    requested(store, user, code, f"r{serial[0]}")
    return decide(store, bindings.decide_signing, signing(user, code, days), f"s{serial[0]}")


@pytest.fixture
def company(store):
    code = valid_credit_code()
    decide(store, archive_review.decide, archive(code, archive_id=f"A-{code}"), f"a-{code}")
    return code


def test_review_of_an_unknown_or_deregistered_company_is_refused(store):
    code = valid_credit_code()
    refused = decide(store, bindings.decide_review, review("U1", code), "m1")
    assert [r["code"] for r in refused.result["reasons"]] == ["sales-company-unknown"]
    decide(store, archive_review.decide, archive(code, archive_id="A", status="deregistered"), "m2")
    refused = decide(store, bindings.decide_review, review("U1", code), "m3")
    assert [r["code"] for r in refused.result["reasons"]] == ["sales-company-deregistered"]
    assert store.state.find_records(bindings.KIND, key_prefix="U1|") == []


def test_a_user_without_market_metering_points_is_refused(store, company):
    refused = decide(store, bindings.decide_review, review("U1", company, points=(("MP-R", "residential"),)), "m1")
    assert [r["code"] for r in refused.result["reasons"]] == ["no-market-metering-point"]


def test_one_sales_company_per_contract_period(store, company):
    other = valid_credit_code()
    decide(store, archive_review.decide, archive(other, archive_id="B", name="另一家售电有限公司"), "a2")
    decide(store, bindings.decide_review, review("U1", company), "m1")
    overlapping = decide(store, bindings.decide_review,
                         review("U1", other, period_start=date(2027, 6, 1), period_end=date(2028, 5, 31)), "m2")
    assert [r["code"] for r in overlapping.result["reasons"]] == ["one-sales-company-per-period"]
    next_period = decide(store, bindings.decide_review,
                         review("U1", other, period_start=date(2027, 12, 1), period_end=date(2028, 11, 30)), "m3")
    assert next_period.result["decision"] == "accepted"


def test_a_refused_agreement_frees_the_period(store, company):
    other = valid_credit_code()
    decide(store, archive_review.decide, archive(other, archive_id="B", name="另一家售电有限公司"), "a2")
    requested(store, "U1", company, "m1")
    refused = decide(store, bindings.decide_signing, signing("U1", company, outcome="refused"), "m2")
    assert refused.result["binding"]["state"] == bindings.AGREEMENT_REFUSED
    assert decide(store, bindings.decide_review, review("U1", other), "m3").result["decision"] == "accepted"


@pytest.mark.parametrize("days, state", [(8, "ownership-established"), (14.9, "ownership-established"),
                                         (15, "ownership-established"), (15.1, "ownership-scheduled"),
                                         (40, "ownership-scheduled")])
def test_ownership_at_once_under_15_days_else_scheduled_for_effective_minus_15(store, company, days, state):
    decision = bound(store, company, "U1", days)
    assert decision.result["binding"]["state"] == state
    pending = store.schedules.pending()
    if state == "ownership-scheduled":
        [schedule] = pending
        assert datetime.fromtimestamp(schedule.due_at, CHINA) == NOW + timedelta(days=days) - timedelta(days=15)
        assert "ownership" not in decision.result
    else:
        assert pending == [] and decision.result["ownership"]["state"] == state


def test_a_due_schedule_establishes_ownership_once(store, company):
    bound(store, company, "U1", 40)
    [schedule] = store.schedules.pending()
    due = OwnershipDue.model_validate(schedule.payload)
    later = NOW + timedelta(days=25)
    first = decide(store, bindings.decide_ownership_due, due, "d1", now=later)
    assert first.result["decision"] == "established"
    again = decide(store, bindings.decide_ownership_due, due, "d2", now=later)
    assert again.result == {"decision": "skipped", "state": "ownership-established"}


def test_signing_for_an_agreement_no_binding_awaits_is_an_unknown_reference(store, company):
    with pytest.raises(UnknownReference, match="TA-X"):
        bindings.decide_signing(signing("U1", company, 5, agreement="TA-X"), store.state.view(), NOW)
    decide(store, bindings.decide_review, review("U1", company), "m1")
    with pytest.raises(UnknownReference, match="not 9"):
        bindings.decide_signing(signing("U1", valid_credit_code(), 5), store.state.view(), NOW)


def test_deregistration_dissolves_holding_bindings_and_cancels_their_schedules(store, company):
    bound(store, company, "U1", 40)  # scheduled
    bound(store, company, "U2", 8)  # established
    decide(store, bindings.decide_review, review("U3", company), "m3")  # agreement requested
    requested(store, "U4", company, "m4")
    decide(store, bindings.decide_signing, signing("U4", company, outcome="refused"), "m5")  # refused: not bound
    result = decide(store, archive_review.decide,
                    archive(company, archive_id=f"A-{company}", revision=2, status="deregistered"), "m6").result
    assert sorted(b["user_unit_id"] for b in result["dissolutions"]) == ["U1", "U2", "U3"]
    assert result["contract_change"] == [] and sorted(result["trace_keys"]) == ["U1", "U2", "U3"]
    assert store.schedules.pending() == []
    states = {r.data["user_unit_id"]: r.data["state"] for r in store.state.find_records(bindings.KIND, ref=f"A-{company}")}
    assert states == {"U1": "dissolution-required", "U2": "dissolution-required", "U3": "dissolution-required",
                      "U4": "agreement-refused"}


def test_decisions_on_one_user_made_at_once_cannot_both_commit(store, company):
    """Two workers decide reviews of the same user for overlapping periods with two companies at
    the same moment: the second commit is refused, and decided again it sees the first binding."""
    other = valid_credit_code()
    decide(store, archive_review.decide, archive(other, archive_id="B", name="另一家售电有限公司"), "a2")
    first_state, second_state = store.state.view(), store.state.view()
    first = bindings.decide_review(review("U1", company), first_state, NOW)
    second = bindings.decide_review(
        review("U1", other, period_start=date(2027, 3, 1), period_end=date(2028, 2, 29)), second_state, NOW)
    assert first.result["decision"] == second.result["decision"] == "accepted"  # each alone would pass
    assert store.state.commit_decision("test", "m1", first, first_state.read, NOW)
    assert not store.state.commit_decision("test", "m2", second, second_state.read, NOW)
    again = decide(store, bindings.decide_review,
                   review("U1", other, period_start=date(2027, 3, 1), period_end=date(2028, 2, 29)), "m2")
    assert [r["code"] for r in again.result["reasons"]] == ["one-sales-company-per-period"]


def test_a_binding_made_while_its_company_is_deregistered_is_not_missed(store, company):
    archive_state, review_state = store.state.view(), store.state.view()
    deregistration = archive_review.decide(
        archive(company, archive_id=f"A-{company}", revision=2, status="deregistered"), archive_state, NOW)
    new_binding = bindings.decide_review(review("U9", company), review_state, NOW)
    assert store.state.commit_decision("test", "r", new_binding, review_state.read, NOW)
    assert not store.state.commit_decision("test", "d", deregistration, archive_state.read, NOW)
    again = decide(store, archive_review.decide,
                   archive(company, archive_id=f"A-{company}", revision=2, status="deregistered"), "d")
    assert [b["user_unit_id"] for b in again.result["dissolutions"]] == ["U9"]


# -- binding changes take effect from the next month -----------------------------------------------


@pytest.mark.parametrize("start, end, now, codes", [
    (date(2026, 12, 1), date(2027, 11, 30), NOW, []),
    (date(2026, 12, 15), date(2027, 11, 30), NOW, ["period-start-mid-month"]),
    (date(2026, 11, 1), date(2027, 10, 31), NOW, ["period-start-not-next-month", "period-already-begun"]),
    # reviewed in November, decided on 1 December (after an outage): the period has begun
    (date(2026, 12, 1), date(2027, 11, 30), datetime(2026, 12, 1, 9, tzinfo=CHINA), ["period-already-begun"]),
    # 16:30 UTC on 30 November is already 1 December in China
    (date(2026, 12, 1), date(2027, 11, 30), datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc),
     ["period-already-begun"]),
])
def test_a_binding_starts_on_the_first_of_a_month_after_the_review(store, company, start, end, now, codes):
    result = decide(store, bindings.decide_review, review("U1", company, period_start=start, period_end=end), "m1",
                    now=now).result
    assert [r["code"] for r in result["reasons"]] == codes
    assert all(r["field"] == "PeriodStart" for r in result["reasons"])


def test_the_review_month_is_the_china_local_one():
    """A review at 17:00 UTC on 30 November happened on 1 December in China: December is its month."""
    late = UserUnitReviewPassed.decode(review_xml("U1", valid_credit_code(),
                                                  reviewed_at=datetime(2026, 11, 30, 17, tzinfo=timezone.utc)))
    codes = [p["code"] for p in periods.period_problems(late, [], datetime(2026, 11, 30, 17, tzinfo=timezone.utc))]
    assert codes == ["period-start-not-next-month", "period-already-begun"]


def test_after_a_dissolution_a_new_binding_starts_no_earlier_than_the_next_month(store, company):
    other = valid_credit_code()
    decide(store, archive_review.decide, archive(other, archive_id="B", name="另一家售电有限公司"), "a2")
    bound(store, company, "U1", 8)
    arrived = datetime(2026, 12, 10, 9, tzinfo=CHINA)
    decide(store, archive_review.decide,  # deregistered with effect from 15 January
           archive(company, archive_id=f"A-{company}", revision=2, status="deregistered", EffectiveDate="2027-01-15"),
           "d1", now=arrived)
    reviewed = datetime(2026, 12, 11, 10, tzinfo=CHINA)
    too_soon = decide(store, bindings.decide_review,
                      review("U1", other, period_start=date(2027, 1, 1), period_end=date(2027, 12, 31),
                             reviewed_at=reviewed), "r1", now=reviewed).result
    assert [r["code"] for r in too_soon["reasons"]] == ["period-start-before-dissolution-month-ends"]
    assert "2027-02-01 at the earliest" in too_soon["reasons"][0]["message"]
    next_month = decide(store, bindings.decide_review,
                        review("U1", other, period_start=date(2027, 2, 1), period_end=date(2028, 1, 31),
                               reviewed_at=reviewed), "r2", now=reviewed).result
    assert next_month["decision"] == "accepted"


@pytest.mark.parametrize("effective, refused", [
    (datetime(2026, 12, 1, tzinfo=CHINA), False),
    (datetime(2026, 11, 30, 16, tzinfo=timezone.utc), False),  # 00:00 on 1 December in China
    (datetime(2026, 11, 30, 23, 59, tzinfo=CHINA), True),
    (datetime(2027, 11, 30, 23, 59, tzinfo=CHINA), False),
    (datetime(2027, 12, 1, tzinfo=CHINA), True),
])
def test_an_effective_time_outside_the_contract_period_is_refused_and_the_binding_waits(store, company, effective,
                                                                                          refused):
    requested(store, "U1", company, "m1")
    message = TripartiteAgreementSigned.decode(signing_xml(
        "TA202612-U1", "U1", company, decided_at=NOW, effective_time=effective))
    result = decide(store, bindings.decide_signing, message, "m2").result
    if refused:
        assert result["decision"] == "effective-time-refused"
        assert [(r["code"], r["field"]) for r in result["reasons"]] == [("effective-time-outside-period", "EffectiveTime")]
        [binding] = store.state.find_records(bindings.KIND, key_prefix="U1|")
        assert binding.data["state"] == bindings.AGREEMENT_APPROVED  # a corrected result can still come
        corrected = TripartiteAgreementSigned.decode(signing_xml(
            "TA202612-U1", "U1", company, decided_at=NOW, effective_time=datetime(2026, 12, 1, tzinfo=CHINA)))
        assert decide(store, bindings.decide_signing, corrected, "m3").result["decision"] == "signed"
    else:
        assert result["decision"] == "signed"


# -- the signing sub-flow in the seed's order (Fig. 2) -------------------------------------------------


def test_the_agreement_goes_for_signing_only_once_marketing_approved_its_draft(store, company):
    accepted = decide(store, bindings.decide_review, review("U1", company), "m1")
    assert accepted.result["binding"]["state"] == bindings.AGREEMENT_REQUESTED
    with pytest.raises(UnknownReference, match="not approved its draft"):  # signed before it was sent
        bindings.decide_signing(signing("U1", company, 8), store.state.view(), NOW)
    draft = decide(store, bindings.decide_draft_review, approved("U1", company), "m2")
    assert (draft.result["decision"], draft.result["binding"]["state"]) == ("draft-approved", bindings.AGREEMENT_APPROVED)
    again = decide(store, bindings.decide_draft_review, approved("U1", company), "m3")
    assert again.result == {"decision": "repeat", "state": bindings.AGREEMENT_APPROVED}
    assert decide(store, bindings.decide_signing, signing("U1", company, 8), "m4").result["decision"] == "signed"


def test_a_rejected_draft_ends_the_binding_and_frees_the_period(store, company):
    other = valid_credit_code()
    decide(store, archive_review.decide, archive(other, archive_id="B", name="另一家售电有限公司"), "a2")
    decide(store, bindings.decide_review, review("U1", company), "m1")
    rejected = decide(store, bindings.decide_draft_review, approved("U1", company, outcome="rejected"), "m2").result
    assert rejected["decision"] == "draft-rejected" and rejected["binding"]["state"] == bindings.AGREEMENT_REJECTED
    [why] = rejected["reasons"]
    assert why["code"] == "agreement-draft-rejected" and "负荷性质与申请不符" in why["message"]
    assert decide(store, bindings.decide_review, review("U1", other), "m3").result["decision"] == "accepted"
    with pytest.raises(UnknownReference, match="TA-NONE"):
        bindings.decide_draft_review(approved("U1", company, agreement="TA-NONE"), store.state.view(), NOW)


def test_a_user_with_a_valid_agreement_skips_the_signing_sub_flow(store, company):
    """Signed for 2026-12..2027-11 and valid until 2028-11-30: the review of the next period with
    the same company needs no new agreement, and ownership follows the 15-day rule from its first day."""
    requested(store, "U1", company, "m1")
    decide(store, bindings.decide_signing, TripartiteAgreementSigned.decode(signing_xml(
        "TA202612-U1", "U1", company, decided_at=NOW, effective_time=datetime(2026, 12, 1, tzinfo=CHINA),
        valid_until=date(2028, 11, 30))), "m2")
    later = datetime(2027, 11, 20, 10, tzinfo=CHINA)  # 11 days before the next period
    next_period = decide(store, bindings.decide_review, review(
        "U1", company, period_start=date(2027, 12, 1), period_end=date(2028, 11, 30),
        reviewed_at=datetime(2027, 11, 18, 9, tzinfo=CHINA)), "m3", now=later).result
    assert next_period["decision"] == "accepted"
    binding = next_period["binding"]
    assert (binding["state"], binding["agreement_no"], binding["signing"]) == (
        bindings.OWNERSHIP_ESTABLISHED, "TA202612-U1", "covered")
    assert binding["effective_time"] == "2027-12-01T00:00:00+08:00"
    assert next_period["ownership"] is binding
    # beyond the agreement's validity, or with another company, the sub-flow runs again
    beyond = decide(store, bindings.decide_review, review(
        "U1", company, period_start=date(2028, 12, 1), period_end=date(2029, 11, 30),
        reviewed_at=datetime(2028, 11, 1, 9, tzinfo=CHINA)), "m4", now=datetime(2028, 11, 1, 9, tzinfo=CHINA)).result
    assert beyond["binding"]["state"] == bindings.AGREEMENT_REQUESTED


def test_without_valid_until_an_agreement_covers_only_its_own_period(store, company):
    bound(store, company, "U1", 8)
    later = datetime(2027, 11, 20, 10, tzinfo=CHINA)
    next_period = decide(store, bindings.decide_review, review(
        "U1", company, period_start=date(2027, 12, 1), period_end=date(2028, 11, 30), reviewed_at=later),
        "m2", now=later).result
    assert next_period["binding"]["state"] == bindings.AGREEMENT_REQUESTED


# -- canonical events in CIM names ------------------------------------------------------------------------


def event_payload(event):
    from lxml import etree

    root = etree.fromstring(event.encode())
    [payload] = root.find("{http://iec.ch/TC57/2011/schema/message}Payload")
    namespace = etree.QName(payload).namespace
    return payload, lambda path: payload.findtext("/".join(f"{{{namespace}}}{p}" for p in path.split("/")))


def event_context(decision, item=None):
    from gridbus.contracts.base import MappingContext

    return MappingContext(route="r", step="event", message_id="m-1", correlation_id="c", source_message_id="s",
                          source_system="tc", now=NOW, decision=decision, item=item)


def test_a_sales_company_event_is_a_cim_service_supplier_named_by_its_credit_code(store):
    from gridbus.mappings.retail import events

    old, new = valid_credit_code(), valid_credit_code()
    decide(store, archive_review.decide, archive(old, archive_id="A"), "m1")
    message = archive(new, archive_id="A", revision=2)
    decision = decide(store, archive_review.decide, message, "m2")
    event = events.sales_company(message, event_context(decision.result))
    assert (event.noun, event.verb) == ("ServiceSupplier", "changed")
    payload, text = event_payload(event)
    assert text("mRID") == "A"  # the stable id: a corrected code is the same supplier
    assert (text("kind"), text("name")) == ("retailer", "厦门鹭江新能售电有限公司")
    assert (text("Names/name"), text("Names/NameType/name")) == (new, "unifiedSocialCreditCode")
    assert text("changedField") == "credit_code"


def test_a_customer_agreement_event_uses_cim_validity_and_refers_to_its_parties_by_mrid(store, company):
    from gridbus.mappings.retail import events

    message = review("U1", company)
    decision = decide(store, bindings.decide_review, message, "m1")
    event = events.binding(message, event_context(decision.result))
    assert (event.noun, event.verb) == ("CustomerAgreement", "created")
    payload, text = event_payload(event)
    assert text("mRID") == "TA202612-U1" and text("status/value") == "agreement-requested"
    assert (text("validityInterval/start"), text("validityInterval/end")) == (
        "2026-12-01T00:00:00+08:00", "2027-12-01T00:00:00+08:00")
    assert (text("ServiceSupplier/mRID"), text("Customer/mRID")) == (f"A-{company}", "0731000012345")
    points = [(p[0].text, p[1].text, p[2].text) for p in payload if p.tag.endswith("UsagePoint")]
    assert points == [("MP-LI-1", "large_industrial", "true"), ("MP-GCI-1", "general_commercial_industrial", "true"),
                      ("MP-RES-1", "residential", "false")]
    assert "customerKind" not in event.encode().decode() and "长沙" not in event.encode().decode()


# -- metering points are marketing's (issue: domain fidelity, item 9) ------------------------------


def hold_points(store, *points):
    """Marketing's master data of metering points, as flow 10 keeps it: (point, category, customer)."""
    from gridbus.contracts.metering_point import METERING_POINT, MeteringPointData
    from gridbus.contracts.state import Decision

    decision = Decision()
    for point_id, category, customer in points:
        decision.put(METERING_POINT, point_id, MeteringPointData(category_code=category, customer=customer).to_data())
    state = store.state.view()
    assert store.state.commit_decision("test", f"points-{points[0][0]}", decision, state.read, NOW)


def test_categories_held_from_marketing_win_over_the_trading_centers(store, company):
    hold_points(store, ("MP-LI-1", "residential", "0731000012345"), ("MP-GCI-1", "agricultural", "0731000012345"))
    refused = decide(store, bindings.decide_review, review("U1", company), "m1")
    assert [r["code"] for r in refused.result["reasons"]] == ["no-market-metering-point"]
    categories = {p["metering_point_id"]: p["category"] for p in refused.result["binding"]["metering_points"]}
    assert categories == {"MP-LI-1": "residential", "MP-GCI-1": "agricultural", "MP-RES-1": "residential"}
    assert any("MP-RES-1" in c.what and "no master data" in c.what for c in refused.changes)


def test_a_point_marketing_files_under_another_customer_is_refused(store, company):
    hold_points(store, ("MP-LI-1", "large_industrial", "0731000099999"))
    refused = decide(store, bindings.decide_review, review("U1", company), "m1")
    assert [r["code"] for r in refused.result["reasons"]] == ["metering-point-of-other-customer"]
    message = refused.result["reasons"][0]["message"]
    assert "MP-LI-1" in message and "0731000099999" not in message


def test_without_marketings_data_the_review_keeps_the_trading_centers_categories_and_says_so(store, company):
    accepted = decide(store, bindings.decide_review, review("U1", company), "m1")
    assert accepted.result["decision"] == "accepted"
    assert [p["category"] for p in accepted.result["binding"]["metering_points"]] == [
        "large_industrial", "general_commercial_industrial", "residential"]
    notes = [c.what for c in accepted.changes if "no master data" in c.what]
    assert notes and all(p in notes[0] for p in ("MP-LI-1", "MP-GCI-1", "MP-RES-1"))
    hold_points(store, ("MP-LI-1", "large_industrial", "0731000012345"))
    later = decide(store, bindings.decide_review, review("U2", company, points=(("MP-LI-1", "residential"),)), "m2")
    assert bindings.market_points(later.result["binding"]) == [{"metering_point_id": "MP-LI-1", "category": "large_industrial"}]
    assert not [c for c in later.changes if "no master data" in c.what]


def test_the_configured_market_categories_decide_which_points_join_the_market(store, company):
    from gridbus.contracts.categories import MarketEligibility
    from gridbus.contracts.rules import Rules

    residential_only = review("U1", company, points=(("MP-RES-1", "residential"),))
    assert decide(store, bindings.decide_review, residential_only, "m1").result["decision"] == "refused"
    rules = Rules(market=MarketEligibility.of({"large_industrial", "residential"}))
    state = store.state.view()
    accepted = bindings.decide_review(review("U2", company, points=(("MP-RES-2", "residential"), ("MP-GCI-2", "general_commercial_industrial"))), state, NOW, rules=rules)
    assert accepted.result["decision"] == "accepted"
    assert bindings.market_points(accepted.result["binding"]) == [{"metering_point_id": "MP-RES-2", "category": "residential"}]
