"""The retail-market flows end to end: the trading center as a pika publisher and as a SOAP stub
over HTTP, the real RabbitMQ, the worker with a clock the tests move, marketing's inbox, and the
store that keeps sales companies, bindings and schedules across worker restarts."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
import time
from datetime import date, datetime, timedelta, timezone

import pytest
from click.testing import CliRunner

from gridbus.adapters.soap import SoapAdapter
from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.soap import peer_wsdl
from gridbus.routes.model import RetryPolicy
from gridbus.routes.retail_market import (
    AGREEMENT_DRAFT_REVIEWED,
    OWNERSHIP_DUE,
    SALES_COMPANY_ARCHIVE_PUSHED,
    TRIPARTITE_AGREEMENT_SIGNED,
    USER_UNIT_REVIEW_PASSED,
)
from tests.conftest import rabbitmqctl
from tests.support.amqp import UpstreamSystem, dead_letter_reader, inbox_reader, running_worker, wait_for
from tests.support.fig9 import FIG9_ROWS
from tests.support.fig9 import archive_xml as fig9_archive_xml
from tests.support.retail import (
    CHINA, Clock, archive_xml, draft_review_json, review_xml, signing_xml, unique, valid_credit_code,
)
from gridbus.tools.cli import main as cli

pytestmark = pytest.mark.broker

FAST = RetryPolicy(attempts=6, first_delay_s=0.3, max_delay_s=1.0)
ROUTES = tuple(
    replace(r, retry=FAST)
    for r in (SALES_COMPANY_ARCHIVE_PUSHED, USER_UNIT_REVIEW_PASSED, AGREEMENT_DRAFT_REVIEWED, TRIPARTITE_AGREEMENT_SIGNED,
              OWNERSHIP_DUE)
)
ARCHIVE, REVIEW, DRAFT, SIGNING, DUE = ROUTES
START = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA)


@pytest.fixture
def tc_stub():
    with SoapStub(peer_wsdl("tc"), path="/tc") as stub:
        yield stub


@pytest.fixture
def tc(vhost, system_users):
    system = UpstreamSystem(vhost, *system_users["tc"])
    yield system
    system.close()


@pytest.fixture
def mkt(vhost, system_users):
    system = UpstreamSystem(vhost, *system_users["mkt"])
    yield system
    system.close()


@pytest.fixture
def mkt_inbox(broker_url):
    return inbox_reader(broker_url, "mkt")


def worker_for(broker_url, store, stub, clock):
    adapter = SoapAdapter("tc", peer_wsdl("tc"), stub.url, timeout_s=5)
    return running_worker(ROUTES, broker_url, store, {"tc": adapter}, clock=clock, schedule_poll_s=0.05)


def publish(system, route, body: bytes, message_id: str | None = None) -> str:
    content_type = "application/json" if body.lstrip().startswith(b"{") else "application/xml"
    return system.publish(route.source.exchange, route.source.routing_key, body, message_id=message_id,
                          message_type=route.contract.message_type, content_type=content_type)


def settled(worker, n: int, what: str) -> None:
    wait_for(lambda: sum(worker.counts.values()) >= n, what=what)


def calls(stub, operation: str, **match) -> list:
    return [c for c in stub.effects(operation) if all(c.payload.get(k) == v for k, v in match.items())]


def marketing(inbox, message_type: str, **match) -> list[dict]:
    found = []
    for m in inbox.where(lambda m: m.properties.get("type") == message_type):
        body = json.loads(m.body)
        if all(body.get(k) == v for k, v in match.items()):
            found.append(body)
    return found


def reasons(call) -> list[dict]:
    listed = call.payload.get("Reasons") or {}
    entries = listed.get("Reason", []) if isinstance(listed, dict) else listed
    return entries if isinstance(entries, list) else [entries]


def register_company(tc, worker, code: str, archive_id: str | None = None) -> str:
    archive_id = archive_id or unique("SCA")
    before = sum(worker.counts.values())
    publish(tc, ARCHIVE, archive_xml(code, archive_id=archive_id))
    settled(worker, before + 1, f"archive {archive_id}")
    return archive_id


# -- archives ------------------------------------------------------------------------------------------


def test_fig9_archives_are_each_rejected_for_their_invalid_credit_code(broker_url, store, tc_stub, tc):
    expected = {15: "credit-code-organisation-check", 17: "credit-code-organisation-check"}
    with worker_for(broker_url, store, tc_stub, Clock(START)) as worker:
        for row in FIG9_ROWS:
            publish(tc, ARCHIVE, fig9_archive_xml(row, archive_id=f"FIG9-{uuid.uuid4().hex[:6]}-{row.row:02d}"))
        settled(worker, len(FIG9_ROWS), "20 archives")
        assert worker.counts == {"delivered": 20}
    feedback = tc_stub.effects("ReceiveArchiveFeedback")
    assert len(feedback) == 20
    by_row = {int(c.payload["ArchiveId"].rsplit("-", 1)[1]): c for c in feedback}
    for row in FIG9_ROWS:
        call = by_row[row.row]
        assert call.payload["Decision"] == "rejected"
        code_reasons = [r for r in reasons(call) if r["Field"] == "CreditCode"]
        assert code_reasons, f"row {row.row}: no credit code reason"
        assert code_reasons[0]["Code"] == expected.get(row.row, "credit-code-length"), row.row
        # 无 is no legal representative: the archive is incomplete too, and says so.
        assert any(r["Code"] == "missing" and r["Field"] == "LegalRepresentative" for r in reasons(call))
    # Row 7 was established after its effective date.
    assert any(r["Code"] == "date-order" for r in reasons(by_row[7]))


def test_trading_center_wins_a_rename_and_a_corrected_code_change_the_same_company(
    broker_url, store, tc_stub, tc, mkt_inbox
):
    code, corrected = valid_credit_code(), valid_credit_code()
    archive_id, renamed_id = unique("SCA"), unique("SCA")
    with worker_for(broker_url, store, tc_stub, Clock(START)) as worker:
        publish(tc, ARCHIVE, archive_xml(code, archive_id=archive_id))
        settled(worker, 1, "first archive")
        publish(tc, ARCHIVE, archive_xml(code, archive_id=archive_id, revision=2, Address="厦门市湖里区云顶北路16号",
                                         RegisteredCapital="30000"))
        settled(worker, 2, "changed archive")
        publish(tc, ARCHIVE, archive_xml(code, archive_id=renamed_id, name="厦门鹭江新能源售电有限公司",
                                         Address="厦门市湖里区云顶北路16号", RegisteredCapital="30000"))
        settled(worker, 3, "renamed under a new archive id")
        publish(tc, ARCHIVE, archive_xml(corrected, archive_id=archive_id, revision=3,
                                         name="厦门鹭江新能源售电有限公司", Address="厦门市湖里区云顶北路16号",
                                         RegisteredCapital="30000"))
        settled(worker, 4, "corrected credit code")
    decisions = [(c.payload["ArchiveRevision"], c.payload["Decision"]) for c in calls(tc_stub, "ReceiveArchiveFeedback", CreditCode=code)]
    assert decisions == [("1", "accepted"), ("2", "accepted"), ("1", "accepted")]
    assert [c.payload["Decision"] for c in calls(tc_stub, "ReceiveArchiveFeedback", CreditCode=corrected)] == ["accepted"]
    changes = marketing(mkt_inbox, "ContractChangeRequired", sales_company_id=archive_id)
    assert [c["archive_revision"] for c in changes] == [2, 1, 3]
    assert {f["field"]: (f["old_value"], f["new_value"]) for f in changes[0]["changed_fields"]} == {
        "address": ("厦门市思明区鹭江道98号建设科技大厦17层", "厦门市湖里区云顶北路16号"),
        "registered_capital_10k_yuan": ("20000", "30000"),
    }
    assert [(f["field"], f["new_value"]) for f in changes[1]["changed_fields"]] == [("name", "厦门鹭江新能源售电有限公司")]
    assert (changes[2]["credit_code"], changes[2]["previous_credit_code"]) == (corrected, code)
    assert [(f["field"], f["old_value"], f["new_value"]) for f in changes[2]["changed_fields"]] == [
        ("credit_code", code, corrected)]
    [company] = [r for r in store.state.find_records("sales-company") if r.key == archive_id]
    assert (company.data["credit_code"], company.data["archive_ids"]) == (corrected, [archive_id, renamed_id])


def test_archive_feedback_reaches_a_trading_center_that_was_down_for_a_while(broker_url, store, tc_stub, tc):
    tc_stub.fail_for(1.5, "http503")
    code = valid_credit_code()
    with worker_for(broker_url, store, tc_stub, Clock(START)) as worker:
        publish(tc, ARCHIVE, archive_xml(code, archive_id=unique("SCA")))
        wait_for(lambda: worker.counts.get("delivered") == 1, timeout=30, what="feedback delivered after recovery")
        assert worker.counts.get("retry-scheduled", 0) >= 1
    assert [c.payload["Decision"] for c in calls(tc_stub, "ReceiveArchiveFeedback", CreditCode=code)] == ["accepted"]
    assert any(not c.applied for c in tc_stub.calls)  # the outage was real


# -- retail user review ---------------------------------------------------------------------------------


def test_a_retried_message_is_not_decided_again(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    """The review is decided (binding: agreement requested) and then the trading center is down:
    the retries read the recorded decision, so the review result is still sent, once, rather than
    the review being taken for a repeat of itself; likewise the approved draft's agreement information."""
    code, user = valid_credit_code(), unique("RU")
    with worker_for(broker_url, store, tc_stub, Clock(START)) as worker:
        register_company(tc, worker, code)
        tc_stub.fail_for(1.5, "http503")
        publish(tc, REVIEW, review_xml(user, code))
        wait_for(lambda: worker.counts.get("delivered") == 2, timeout=30, what="review delivered after recovery")
        assert worker.counts.get("retry-scheduled", 0) >= 1
        tc_stub.fail_for(1.5, "http503")
        publish(mkt, DRAFT, draft_review_json(f"TA202612-{user}", user, code))
        wait_for(lambda: worker.counts.get("delivered") == 3, timeout=30, what="approval delivered after recovery")
    assert [c.payload["Decision"] for c in calls(tc_stub, "ReceiveUserReviewResult", UserUnitId=user)] == ["accepted"]
    assert len(calls(tc_stub, "ReceiveAgreementInfo", UserUnitId=user)) == 1
    assert len(marketing(mkt_inbox, "AgreementDraftRequested", user_unit_id=user)) == 1
    [binding] = store.state.find_records("binding", key_prefix=f"{user}|")
    assert (binding.data["state"], binding.version) == ("agreement-approved", 2)


def review_and_approve(tc, mkt, worker, code: str, user: str) -> str:
    """The review accepted and marketing's draft approved: the agreement goes for signing."""
    before = sum(worker.counts.values())
    publish(tc, REVIEW, review_xml(user, code))
    settled(worker, before + 1, f"review of {user}")
    agreement = f"TA202612-{user}"
    publish(mkt, DRAFT, draft_review_json(agreement, user, code))
    settled(worker, before + 2, f"draft of {agreement} approved")
    return agreement


def review_and_sign(tc, mkt, worker, code: str, user: str, clock: Clock, effective_in_days: int) -> str:
    before = sum(worker.counts.values())
    agreement = review_and_approve(tc, mkt, worker, code, user)
    publish(tc, SIGNING, signing_xml(agreement, user, code, decided_at=clock.now,
                                     effective_time=clock.now + timedelta(days=effective_in_days)))
    settled(worker, before + 3, f"signing of {agreement}")
    return agreement


def test_agreement_effective_in_10_days_establishes_ownership_at_once(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    code, user, clock = valid_credit_code(), unique("RU"), Clock(START)
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, code)
        agreement = review_and_sign(tc, mkt, worker, code, user, clock, effective_in_days=10)
        assert worker.counts == {"delivered": 4}
    [result] = calls(tc_stub, "ReceiveUserReviewResult", UserUnitId=user)
    assert result.payload["Decision"] == "accepted"
    [draft] = marketing(mkt_inbox, "AgreementDraftRequested", user_unit_id=user)
    assert draft["agreement_no"] == agreement and len(draft["metering_points"]) == 3
    assert [c.payload["AgreementNo"] for c in calls(tc_stub, "ReceiveAgreementInfo", UserUnitId=user)] == [agreement]
    assert len(calls(tc_stub, "ReceiveArchivalResult", AgreementNo=agreement)) == 1
    [billing] = marketing(mkt_inbox, "BillingSchemeAdjustment", user_unit_id=user)
    assert {p["metering_point_id"]: p["category"] for p in billing["metering_points"]} == {
        "MP-LI-1": "large_industrial", "MP-GCI-1": "general_commercial_industrial"}  # residential untouched
    assert len(marketing(mkt_inbox, "OwnershipEstablished", user_unit_id=user)) == 1
    [relation] = calls(tc_stub, "ReceiveOwnershipRelation", UserUnitId=user)
    points = relation.payload["MeteringPoints"]["MeteringPoint"]
    assert sorted(p["MeteringPointId"] for p in points) == ["MP-GCI-1", "MP-LI-1"]
    assert store.schedules.pending() == []


def test_agreement_effective_in_40_days_is_scheduled_and_fires_after_a_worker_restart(
    broker_url, store, tc_stub, tc, mkt, mkt_inbox
):
    code, user, clock = valid_credit_code(), unique("RU"), Clock(START)
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, code)
        review_and_sign(tc, mkt, worker, code, user, clock, effective_in_days=40)
        clock.advance(days=24)  # one day before it falls due: nothing happens
        time.sleep(0.5)  # ten polls of the schedules
    assert marketing(mkt_inbox, "BillingSchemeAdjustment", user_unit_id=user) == []
    [pending] = store.schedules.pending()
    assert pending.route == DUE.name
    assert datetime.fromtimestamp(pending.due_at, CHINA) == START + timedelta(days=25)

    clock.advance(days=2)  # the worker was down when it fell due; a new one sends it
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        wait_for(lambda: worker.counts.get("delivered") == 1, what="the due schedule handled")
    assert store.schedules.pending() == []
    [billing] = marketing(mkt_inbox, "BillingSchemeAdjustment", user_unit_id=user)
    assert len(billing["metering_points"]) == 2
    assert len(calls(tc_stub, "ReceiveOwnershipRelation", UserUnitId=user)) == 1


def test_redelivered_and_repeated_messages_change_nothing_a_second_time(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    code, user, clock = valid_credit_code(), unique("RU"), Clock(START)
    archive_id = unique("SCA")
    agreement = f"TA202612-{user}"
    bodies = [
        (tc, ARCHIVE, archive_xml(code, archive_id=archive_id)),
        (tc, REVIEW, review_xml(user, code)),
        (mkt, DRAFT, draft_review_json(agreement, user, code)),
        (tc, SIGNING, signing_xml(agreement, user, code, decided_at=START, effective_time=START.replace(month=12, day=1, hour=0))),
    ]
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        n = 0
        for system, route, body in bodies:
            message_id = str(uuid.uuid4())
            publish(system, route, body, message_id=message_id)  # the original
            publish(system, route, body, message_id=message_id)  # redelivered by the publisher
            publish(system, route, body)  # the same content re-sent as a new message
            n += 3
            settled(worker, n, f"{route.name} three times")
        # the re-sent archive has the revision already applied: superseded; the others decide "repeat"
        assert worker.counts == {"delivered": 7, "superseded": 1, "duplicate": 4}
    assert len(calls(tc_stub, "ReceiveArchiveFeedback", CreditCode=code)) == 1
    assert len(calls(tc_stub, "ReceiveUserReviewResult", UserUnitId=user)) == 1  # the repeat changes nothing
    assert len(calls(tc_stub, "ReceiveAgreementInfo", UserUnitId=user)) == 1
    assert len(calls(tc_stub, "ReceiveArchivalResult", UserUnitId=user)) == 1
    assert len(calls(tc_stub, "ReceiveOwnershipRelation", UserUnitId=user)) == 1
    for message_type in ("AgreementDraftRequested", "BillingSchemeAdjustment", "OwnershipEstablished"):
        assert len(marketing(mkt_inbox, message_type, user_unit_id=user)) == 1, message_type
    assert marketing(mkt_inbox, "ContractChangeRequired", credit_code=code) == []


def test_deregistration_requires_dissolution_of_every_bound_user(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    code, clock = valid_credit_code(), Clock(START)
    users = [unique("RU") for _ in range(3)]
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        archive_id = register_company(tc, worker, code)
        review_and_sign(tc, mkt, worker, code, users[0], clock, effective_in_days=40)  # scheduled
        review_and_sign(tc, mkt, worker, code, users[1], clock, effective_in_days=8)  # established
        before = sum(worker.counts.values())
        publish(tc, SIGNING, signing_xml(f"TA202612-{users[1]}", users[1], code, decided_at=START,
                                         effective_time=START))  # a repeat: nothing
        publish(tc, REVIEW, review_xml(users[2], code))  # agreement requested
        settled(worker, before + 2, "third user")
        before = sum(worker.counts.values())
        publish(tc, ARCHIVE, archive_xml(code, archive_id=archive_id, revision=2, status="deregistered"))
        settled(worker, before + 1, "deregistration")
    dissolutions = marketing(mkt_inbox, "RelationshipDissolutionRequired", sales_company_credit_code=code)
    assert sorted(d["user_unit_id"] for d in dissolutions) == sorted(users)
    assert {d["reason"] for d in dissolutions} == {"sales_company_deregistered"}
    assert store.schedules.pending() == []  # the scheduled ownership was cancelled
    assert marketing(mkt_inbox, "ContractChangeRequired", credit_code=code) == []


def test_a_second_sales_company_in_one_period_is_refused_with_its_reason(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    first, second, user, clock = valid_credit_code(), valid_credit_code(), unique("RU"), Clock(START)
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, first)
        register_company(tc, worker, second)
        review_and_sign(tc, mkt, worker, first, user, clock, effective_in_days=8)
        before = sum(worker.counts.values())
        publish(tc, REVIEW, review_xml(user, second, period_start=date(2027, 3, 1), period_end=date(2028, 2, 29)))
        settled(worker, before + 1, "second binding")
    results = calls(tc_stub, "ReceiveUserReviewResult", UserUnitId=user)
    assert [(r.payload["SalesCompanyCreditCode"], r.payload["Decision"]) for r in results] == [
        (first, "accepted"), (second, "refused")]
    [refusal] = reasons(results[1])
    assert refusal["Code"] == "one-sales-company-per-period"
    assert first in refusal["Message"]
    assert marketing(mkt_inbox, "AgreementDraftRequested", sales_company_credit_code=second, user_unit_id=user) == []


def test_binding_changes_take_effect_from_the_next_month(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    """A mid-month start is refused with its reason; a signing result whose effective time lies
    outside the contract period is refused back to the trading center, and its correction archived."""
    code, user, mid_month, clock = valid_credit_code(), unique("RU"), unique("RU"), Clock(START)
    agreement = f"TA202612-{user}"
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, code)
        publish(tc, REVIEW, review_xml(mid_month, code, period_start=date(2026, 12, 15), period_end=date(2027, 12, 14)))
        publish(tc, REVIEW, review_xml(user, code))
        settled(worker, 3, "two reviews")
        publish(mkt, DRAFT, draft_review_json(agreement, user, code))
        settled(worker, 4, "draft approved")
        publish(tc, SIGNING, signing_xml(agreement, user, code, decided_at=START,
                                         effective_time=datetime(2026, 11, 25, tzinfo=CHINA)))
        settled(worker, 5, "signing before the period")
        # corrected, and sent in UTC: 16:00 UTC on 30 November is 00:00 on 1 December in China
        publish(tc, SIGNING, signing_xml(agreement, user, code, decided_at=START,
                                         effective_time=datetime(2026, 11, 30, 16, tzinfo=timezone.utc)))
        settled(worker, 6, "corrected signing")
        assert worker.counts == {"delivered": 6}
    [refused] = calls(tc_stub, "ReceiveUserReviewResult", UserUnitId=mid_month)
    assert refused.payload["Decision"] == "refused"
    assert [r["Code"] for r in reasons(refused)] == ["period-start-mid-month"]
    assert marketing(mkt_inbox, "AgreementDraftRequested", user_unit_id=mid_month) == []
    first, second = calls(tc_stub, "ReceiveArchivalResult", AgreementNo=agreement)
    assert (first.payload["Decision"], first.payload.get("ArchivedAt")) == ("refused", None)
    [why] = reasons(first)
    assert (why["Code"], why["Field"]) == ("effective-time-outside-period", "EffectiveTime")
    assert "2026-12-01..2027-11-30" in why["Message"]
    assert second.payload["Decision"] == "archived" and second.payload["ArchivedAt"]
    # every time sent on is written in +08:00, the instant unchanged
    assert second.payload["EffectiveTime"] == "2026-12-01T00:00:00+08:00"
    [established] = marketing(mkt_inbox, "OwnershipEstablished", user_unit_id=user)
    assert established["effective_time"] == "2026-12-01T00:00:00+08:00"
    [relation] = calls(tc_stub, "ReceiveOwnershipRelation", UserUnitId=user)
    assert relation.payload["EffectiveTime"] == "2026-12-01T00:00:00+08:00"


# -- the signing sub-flow in the seed's order (Fig. 2) ---------------------------------------------------


def test_the_agreement_goes_to_the_trading_center_only_once_marketing_approved_it(
    broker_url, store, tc_stub, tc, mkt, mkt_inbox
):
    code, user, rejected_user, clock = valid_credit_code(), unique("RU"), unique("RU"), Clock(START)
    agreement = f"TA202612-{user}"
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, code)
        publish(tc, REVIEW, review_xml(user, code))
        publish(tc, REVIEW, review_xml(rejected_user, code))
        settled(worker, 3, "two reviews")
        # drafting, review and approval are marketing's: nothing goes for signing yet
        assert len(marketing(mkt_inbox, "AgreementDraftRequested", sales_company_credit_code=code)) == 2
        assert calls(tc_stub, "ReceiveAgreementInfo", SalesCompanyCreditCode=code) == []
        early = publish(tc, SIGNING, signing_xml(agreement, user, code, decided_at=START,
                                                 effective_time=datetime(2026, 12, 1, tzinfo=CHINA)))
        settled(worker, 4, "a signing result before the approval")
        publish(mkt, DRAFT, draft_review_json(agreement, user, code))
        publish(mkt, DRAFT, draft_review_json(f"TA202612-{rejected_user}", rejected_user, code, outcome="rejected",
                                              rejection_reason="用户用电性质与申请不符"))
        settled(worker, 6, "one draft approved, one rejected")
        publish(tc, SIGNING, signing_xml(agreement, user, code, decided_at=START,
                                         effective_time=datetime(2026, 12, 1, tzinfo=CHINA)))
        settled(worker, 7, "signing after the approval")
        assert worker.counts == {"delivered": 6, "dead-lettered": 1}
    [letter] = [m for m in dead_letter_reader(broker_url, SIGNING).drain() if m.properties["message_id"] == early]
    assert "not approved its draft" in letter.headers["x-gridbus-error"]
    [info] = calls(tc_stub, "ReceiveAgreementInfo", SalesCompanyCreditCode=code)
    assert info.payload["AgreementNo"] == agreement
    assert len(calls(tc_stub, "ReceiveArchivalResult", AgreementNo=agreement)) == 1
    # the rejected draft: the trading center is told the review is refused after all, with the reason
    results = calls(tc_stub, "ReceiveUserReviewResult", UserUnitId=rejected_user)
    assert [r.payload["Decision"] for r in results] == ["accepted", "refused"]
    [why] = reasons(results[1])
    assert why["Code"] == "agreement-draft-rejected" and "用户用电性质与申请不符" in why["Message"]
    [binding] = store.state.find_records("binding", key_prefix=f"{rejected_user}|")
    assert binding.data["state"] == "agreement-rejected"


def test_a_user_with_a_valid_agreement_skips_the_signing_sub_flow(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    code, user, clock = valid_credit_code(), unique("RU"), Clock(START)
    agreement = f"TA202612-{user}"
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, code)
        review_and_approve(tc, mkt, worker, code, user)
        publish(tc, SIGNING, signing_xml(agreement, user, code, decided_at=START, valid_until=date(2028, 11, 30),
                                         effective_time=datetime(2026, 12, 1, tzinfo=CHINA)))
        settled(worker, 4, "a two-year agreement signed")
        clock.now = datetime(2027, 11, 20, 10, tzinfo=CHINA)
        publish(tc, REVIEW, review_xml(user, code, period_start=date(2027, 12, 1), period_end=date(2028, 11, 30),
                                       reviewed_at=datetime(2027, 11, 18, 9, tzinfo=CHINA)))
        settled(worker, 5, "review of the next period")
        assert worker.counts == {"delivered": 5}
    assert len(marketing(mkt_inbox, "AgreementDraftRequested", user_unit_id=user)) == 1  # the first period's only
    assert len(calls(tc_stub, "ReceiveAgreementInfo", UserUnitId=user)) == 1
    results = calls(tc_stub, "ReceiveUserReviewResult", UserUnitId=user)
    assert [r.payload["Decision"] for r in results] == ["accepted", "accepted"]
    ownership = marketing(mkt_inbox, "OwnershipEstablished", user_unit_id=user)
    assert [(o["period_start"], o["agreement_no"], o["effective_time"]) for o in ownership] == [
        ("2026-12-01", agreement, "2026-12-01T00:00:00+08:00"),
        ("2027-12-01", agreement, "2027-12-01T00:00:00+08:00")]
    assert len(marketing(mkt_inbox, "BillingSchemeAdjustment", user_unit_id=user)) == 2
    relations = calls(tc_stub, "ReceiveOwnershipRelation", UserUnitId=user)
    assert [r.payload["PeriodStart"] for r in relations] == ["2026-12-01", "2027-12-01"]


def test_signing_result_for_an_unknown_agreement_is_dead_lettered_with_the_reason(broker_url, store, tc_stub, tc):
    with worker_for(broker_url, store, tc_stub, Clock(START)) as worker:
        message_id = publish(tc, SIGNING, signing_xml("TA-NOPE", unique("RU"), valid_credit_code(), decided_at=START,
                                                      effective_time=START))
        settled(worker, 1, "unknown agreement")
    [letter] = [m for m in dead_letter_reader(broker_url, SIGNING).drain() if m.properties["message_id"] == message_id]
    assert letter.headers["x-gridbus-error-type"] == "unknown-reference"
    assert "TA-NOPE" in letter.headers["x-gridbus-error"]


# -- trace ---------------------------------------------------------------------------------------------


def test_trace_shows_the_whole_history_of_a_user_unit(broker_url, store, tc_stub, tc, mkt):
    code, user, clock = valid_credit_code(), unique("RU"), Clock(START)
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, code)
        review_and_sign(tc, mkt, worker, code, user, clock, effective_in_days=30)
        clock.advance(days=16)
        wait_for(lambda: worker.counts.get("delivered") == 5, what="ownership due")
    result = CliRunner().invoke(cli, ["trace", user, "--store", store.url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()[1:]
    story = [(line.split()[1], line.split()[2]) for line in lines]
    assert story[0][1] == REVIEW.name
    events = [event for event, _ in story]
    # received and decided, then each delivery, for each message in turn
    for expected in ("state", "scheduled", "fired"):
        assert expected in events, expected
    assert events.index("scheduled") < events.index("fired")
    text = result.output
    order = [text.index(s) for s in ("agreement-requested", "agreement-approved", "ReceiveAgreementInfo", "ownership-scheduled",
                                     "ReceiveArchivalResult", "fell due", "ownership-established",
                                     "ReceiveOwnershipRelation")]
    assert order == sorted(order), text
    assert "长沙" not in text  # the user's name is personal data: never journalled


@pytest.mark.broker_restart
def test_a_schedule_survives_a_broker_restart(broker_url, store, tc_stub, tc, mkt, mkt_inbox):
    code, user, clock = valid_credit_code(), unique("RU"), Clock(START)
    with worker_for(broker_url, store, tc_stub, clock) as worker:
        register_company(tc, worker, code)
        review_and_sign(tc, mkt, worker, code, user, clock, effective_in_days=40)
        rabbitmqctl("stop_app", timeout=120)
        time.sleep(1)
        rabbitmqctl("start_app", timeout=120)
        rabbitmqctl("await_startup", timeout=120)
        clock.advance(days=26)  # falls due while the worker reconnects
        wait_for(lambda: worker.counts.get("delivered") == 5, timeout=90, what="the due schedule handled after the restart")
    assert store.schedules.pending() == []
    assert len(marketing(mkt_inbox, "BillingSchemeAdjustment", user_unit_id=user)) == 1
    assert len(calls(tc_stub, "ReceiveOwnershipRelation", UserUnitId=user)) == 1
