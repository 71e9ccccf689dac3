"""Route declarations: unique names, usable contracts, sane retry tiers, the declared flows."""

from __future__ import annotations

import inspect
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gridbus.contracts.base import MappingContext
from gridbus.routes import ROUTES, route_by_name
from gridbus.routes.model import Route
from gridbus.workers.store import Store

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"

EXPECTED_FLOWS = {
    "mkt.supply-plan-pushed": ("mkt", "supply-plan.pushed", "SupplyPlanPushed",
                               [("cmd", "cmd", "ReceiveSupplyPlan"), ("event", "events", "")]),
    "mkt.energization-time-set": ("mkt", "energization-time.set", "EnergizationTimeSet",
                                  [("cmd", "cmd", "ReceiveEnergizationTime"), ("event", "events", "")]),
    "pms.black-map-published": ("pms", "black-map.published", "BlackMapPublished",
                                [("mkt", "mkt", "black-map.notice"), ("event", "events", "")]),
    "cmd.plan-changed": ("cmd", "plan.changed", "PlanChanged",
                         [("mkt", "mkt", "plan-change.notice"), ("event", "events", "")]),
    "pms.project-created": ("pms", "project.created", "ProjectCreated", [("mkt", "mkt", "project.notice")]),
    "cmd.outage-planned": ("cmd", "outage.planned", "OutagePlanned", [("mkt", "mkt", "outage-plan.notice")]),
    "mkt.energization-completed": ("mkt", "energization.completed", "EnergizationCompleted",
                                   [("cmd", "cmd", "ReceiveEnergizationCompleted"),
                                    ("pms", "pms", "energization.completed")]),
    "tc.sales-company-archive-pushed": (
        "tc", "sales-company.archive-pushed", "SalesCompanyArchivePushed",
        [("tc-feedback", "tc", "ReceiveArchiveFeedback"), ("mkt-contract-change", "mkt", "contract-change.required"),
         ("mkt-dissolution", "mkt", "relationship-dissolution.required"), ("event", "events", ""),
         ("event-dissolution", "events", "")]),
    "tc.user-unit-review-passed": (
        "tc", "user-unit.review-passed", "UserUnitReviewPassed",
        [("tc-review-result", "tc", "ReceiveUserReviewResult"), ("mkt-agreement-draft", "mkt", "agreement-draft.requested"),
         ("mkt-billing-scheme", "mkt", "billing-scheme.adjust"), ("mkt-ownership", "mkt", "ownership.established"),
         ("tc-ownership", "tc", "ReceiveOwnershipRelation"), ("event", "events", "")]),
    "mkt.agreement-draft-reviewed": (
        "mkt", "agreement-draft.reviewed", "AgreementDraftReviewed",
        [("tc-agreement-info", "tc", "ReceiveAgreementInfo"), ("tc-review-result", "tc", "ReceiveUserReviewResult"),
         ("event", "events", "")]),
    "tc.tripartite-agreement-signed": (
        "tc", "tripartite-agreement.signed", "TripartiteAgreementSigned",
        [("tc-archival-result", "tc", "ReceiveArchivalResult"), ("mkt-billing-scheme", "mkt", "billing-scheme.adjust"),
         ("mkt-ownership", "mkt", "ownership.established"), ("tc-ownership", "tc", "ReceiveOwnershipRelation"),
         ("event", "events", "")]),
    "gridbus.ownership-due": (
        "gridbus", "ownership.due", "OwnershipDue",
        [("mkt-billing-scheme", "mkt", "billing-scheme.adjust"), ("mkt-ownership", "mkt", "ownership.established"),
         ("tc-ownership", "tc", "ReceiveOwnershipRelation"), ("event", "events", "")]),
    "pms.master-data-changed": ("pms", "master-data.changed", "MasterDataChanged",
                                [("reply", "pms", "master-data.reply"), ("dmp", "dmp", "master-data.changed"),
                                 ("event", "events", "")]),
    "mkt.master-data-changed": ("mkt", "master-data.changed", "MasterDataChanged",
                                [("reply", "mkt", "master-data.reply"), ("dmp", "dmp", "master-data.changed"),
                                 ("event", "events", "")]),
    "mdc.daily-frozen-published": (
        "mdc", "daily-frozen.published", "DailyFrozenPublished",
        [("mkt-readings", "mkt", "meter-readings.created"), ("mkt-corrections", "mkt", "meter-readings.changed"),
         ("tc-readings", "tc", "ReceiveMeterReadings"), ("mdc-reply", "mdc", "daily-frozen.reply"),
         ("event", "events", "")]),
}

EXAMPLE_FILES = {
    "SupplyPlanPushed": "mkt.SupplyPlanPushed.json",
    "EnergizationTimeSet": "mkt.EnergizationTimeSet.json",
    "BlackMapPublished": "pms.BlackMapPublished.xml",
    "PlanChanged": "cmd.PlanChanged.xml",
    "ProjectCreated": "pms.ProjectCreated.xml",
    "OutagePlanned": "cmd.OutagePlanned.xml",
    "EnergizationCompleted": "mkt.EnergizationCompleted.json",
    "SalesCompanyArchivePushed": "tc.SalesCompanyArchivePushed.xml",
    "UserUnitReviewPassed": "tc.UserUnitReviewPassed.xml",
    "TripartiteAgreementSigned": "tc.TripartiteAgreementSigned.xml",
    "AgreementDraftReviewed": "mkt.AgreementDraftReviewed.json",
    "OwnershipDue": "gridbus.OwnershipDue.json",
    "DailyFrozenPublished": "mdc.DailyFrozenPublished.xml",
}
#: Routes whose contracts share a message type with another route's (one per sending system).
EXAMPLE_FILES_BY_ROUTE = {
    "pms.master-data-changed": "pms.MasterDataChanged.xml",
    "mkt.master-data-changed": "mkt.MasterDataChanged.json",
}
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=timezone(timedelta(hours=8)))


def test_route_names_are_unique():
    names = [route.name for route in ROUTES]
    assert len(names) == len(set(names))


def test_exactly_the_declared_flows():
    assert {route.name for route in ROUTES} == set(EXPECTED_FLOWS)
    for route in ROUTES:
        system, routing_key, message_type, steps = EXPECTED_FLOWS[route.name]
        assert (route.source.system, route.source.routing_key) == (system, routing_key)
        assert route.contract.message_type == message_type
        assert [(s.name, s.target.adapter, s.target.operation) for s in route.steps] == steps


def test_route_names_start_with_the_source_system():
    for route in ROUTES:
        assert route.name.startswith(route.source.system + ".")


def test_no_two_routes_share_a_binding():
    bindings = [(route.source.exchange, route.source.routing_key) for route in ROUTES]
    assert len(bindings) == len(set(bindings))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_contract_offers_message_type_and_decode(route):
    contract = route.contract
    assert isinstance(contract.message_type, str) and contract.message_type
    assert inspect.ismethod(contract.decode)  # a classmethod, bound to the class


def example(route):
    name = EXAMPLE_FILES_BY_ROUTE.get(route.name) or EXAMPLE_FILES[route.contract.message_type]
    return route.contract.decode((EXAMPLES / name).read_bytes())


def map_steps(route, message, decision=None) -> dict:
    """Every step's output (fan-out steps: per item), as the pipeline would ask for it."""
    outputs = {}
    for step in route.steps:
        context = MappingContext(
            route=route.name, step=step.name, message_id=f"m-{step.name}", correlation_id="c",
            source_message_id="s", source_system=route.source.system, now=NOW, decision=decision or {},
        )
        if step.each is None:
            outputs[step.name] = step.mapping(message, context)
        else:
            for key, item in step.each(message, context):
                outputs[f"{step.name}/{key}"] = step.mapping(message, replace(context, item=item))
    for name, output in outputs.items():
        if output is None:
            continue
        target = next(s for s in route.steps if name.split("/")[0] == s.name).target
        if target.adapter in ("cmd", "tc"):
            assert output.operation == target.operation
            assert output.to_soap()["MessageID"].startswith("m-")
        else:
            assert output.encode()
    return outputs


@pytest.mark.parametrize("route", [r for r in ROUTES if r.decide is None], ids=lambda r: r.name)
def test_every_step_maps_the_example(route):
    outputs = map_steps(route, example(route))
    assert all(output is not None for output in outputs.values())


def decide_in_turn(store, names):
    """Each named route's example decided on ``store`` in turn and mapped: the steps that produced
    an output, per route, and the last decision."""
    produced = {}
    for name in names:
        route = route_by_name(name)
        message = example(route)
        state = store.state.view()
        decision = route.decide(message, state, NOW)
        assert store.state.commit_decision(route.name, f"id-{name}", decision, state.read, NOW)
        produced[name] = {k for k, v in map_steps(route, message, decision.result).items() if v is not None}
    return produced, decision


def test_hv_examples_in_process_order_map_to_every_output():
    """The examples are one story: plan revision 1 pushed, its energization time changed, the
    command center's change to revision 2, the black map of revision 2; decided on a real store."""
    store = Store("sqlite:///:memory:")
    produced, decision = decide_in_turn(store, ("mkt.supply-plan-pushed", "mkt.energization-time-set",
                                                "cmd.plan-changed", "pms.black-map-published"))
    assert produced == {name: {s.name for s in route_by_name(name).steps} for name in produced}
    assert decision.result == {"may_energize": True, "hold_reason": None}


def test_retail_examples_in_process_order_map_to_every_output():
    """The examples are one story: company archived, user reviewed, draft approved by marketing,
    agreement signed (effective in 5 days: ownership at once); decided on a real store, each in turn."""
    store = Store("sqlite:///:memory:")
    produced, _ = decide_in_turn(store, ("tc.sales-company-archive-pushed", "tc.user-unit-review-passed",
                                         "mkt.agreement-draft-reviewed", "tc.tripartite-agreement-signed"))
    assert produced == {
        "tc.sales-company-archive-pushed": {"tc-feedback", "event"},
        "tc.user-unit-review-passed": {"tc-review-result", "mkt-agreement-draft", "event"},
        "mkt.agreement-draft-reviewed": {"tc-agreement-info", "event"},
        "tc.tripartite-agreement-signed": {"tc-archival-result", "mkt-billing-scheme", "mkt-ownership",
                                           "tc-ownership", "event"},
    }
    # The ownership is established already: the schedule's message, should it come, does nothing.
    due = route_by_name("gridbus.ownership-due")
    state = store.state.view()
    decision = due.decide(example(due), state, NOW)
    assert decision.result["decision"] == "skipped"
    assert {k for k, v in map_steps(due, example(due), decision.result).items() if v is not None} == set()


@pytest.mark.parametrize("name", sorted(EXAMPLE_FILES_BY_ROUTE))
def test_master_data_examples_are_accepted_and_map_to_every_output(name):
    route = route_by_name(name)
    store = Store("sqlite:///:memory:")
    state = store.state.view()
    decision = route.decide(example(route), state, NOW)
    assert decision.result["decision"] == "accepted"
    outputs = map_steps(route, example(route), decision.result)
    assert set(outputs) == {"reply", "dmp", "event"} and all(o is not None for o in outputs.values())


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_delay_tiers_are_sane(route):
    retry = route.retry
    tiers = retry.delay_tiers
    assert retry.attempts >= 2
    assert tiers == tuple(sorted(tiers)) and len(tiers) <= retry.attempts - 1
    assert tiers[0] == retry.first_delay_s >= 1
    assert tiers[-1] <= retry.max_delay_s <= 3600
    # the whole back-off fits well inside a working day
    assert sum(retry.delay_for(a) for a in range(1, retry.attempts)) < 4 * 3600


def test_soap_routes_retry_eight_times_from_5s_to_10min():
    for route in ROUTES:
        if any(step.target.adapter in ("cmd", "tc") for step in route.steps):
            assert (route.retry.attempts, route.retry.first_delay_s, route.retry.max_delay_s) == (8, 5, 600)
            assert route.retry.delay_tiers == (5, 10, 20, 40, 80, 160, 320)


def test_energization_time_later_revision_supersedes():
    route = route_by_name("mkt.energization-time-set")
    message = route.contract.decode((EXAMPLES / "mkt.EnergizationTimeSet.json").read_bytes())
    assert route.supersession is not None
    assert route.supersession.key(message) == "HV2026110300017"
    assert route.supersession.revision(message) == 2
    assert route.supersession.key.__name__ != "<lambda>" and route.supersession.revision.__name__ != "<lambda>"


def test_plan_changes_are_checked_by_the_route_s_decision_not_superseded():
    route = route_by_name("cmd.plan-changed")
    assert route.supersession is None and route.decide is not None


def test_supply_plan_later_revision_supersedes():
    route = route_by_name("mkt.supply-plan-pushed")
    message = route.contract.decode((EXAMPLES / "mkt.SupplyPlanPushed.json").read_bytes())
    assert route.supersession.key(message) == "HV2026110300017"
    assert route.supersession.revision(message) == message.plan_revision == 1


def test_black_maps_are_superseded_by_graph_version_per_application():
    route = route_by_name("pms.black-map-published")
    message = route.contract.decode((EXAMPLES / "pms.BlackMapPublished.xml").read_bytes())
    assert (route.supersession.key(message), route.supersession.revision(message)) == ("HV2026110300017", 3)


def test_only_revisioned_flows_are_superseded():
    assert [r.name for r in ROUTES if r.supersession] == [
        "mkt.supply-plan-pushed", "mkt.energization-time-set", "pms.black-map-published", "cmd.outage-planned", "tc.sales-company-archive-pushed"]


def test_route_by_name():
    assert isinstance(route_by_name("pms.black-map-published"), Route)
    with pytest.raises(KeyError) as caught:
        route_by_name("pms.nothing")
    assert "mkt.supply-plan-pushed" in str(caught.value)
