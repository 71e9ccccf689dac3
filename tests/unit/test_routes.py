"""Route declarations: unique names, usable contracts, sane retry tiers, the declared flows."""

from __future__ import annotations

import inspect
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from contracts.base import MappingContext
from routes import ROUTES, route_by_name
from routes.model import Route

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
}

EXAMPLE_FILES = {
    "SupplyPlanPushed": "mkt.SupplyPlanPushed.json",
    "EnergizationTimeSet": "mkt.EnergizationTimeSet.json",
    "BlackMapPublished": "pms.BlackMapPublished.xml",
    "PlanChanged": "cmd.PlanChanged.xml",
}


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


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_step_maps_the_example(route):
    message = route.contract.decode((EXAMPLES / EXAMPLE_FILES[route.contract.message_type]).read_bytes())
    for step in route.steps:
        context = MappingContext(
            route=route.name, step=step.name, message_id=f"m-{step.name}", correlation_id="c",
            source_message_id="s", source_system=route.source.system,
            now=datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8))),
        )
        output = step.mapping(message, context)
        if step.target.adapter == "cmd":
            assert output.operation == step.target.operation
            assert output.to_soap()["MessageID"] == f"m-{step.name}"
        else:
            assert output.encode()


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
        if any(step.target.adapter == "cmd" for step in route.steps):
            assert (route.retry.attempts, route.retry.first_delay_s, route.retry.max_delay_s) == (8, 5, 600)
            assert route.retry.delay_tiers == (5, 10, 20, 40, 80, 160, 320)


def test_energization_time_later_revision_supersedes():
    route = route_by_name("mkt.energization-time-set")
    message = route.contract.decode((EXAMPLES / "mkt.EnergizationTimeSet.json").read_bytes())
    assert route.supersession is not None
    assert route.supersession.key(message) == "HV2026110300017"
    assert route.supersession.revision(message) == 2
    assert route.supersession.key.__name__ != "<lambda>" and route.supersession.revision.__name__ != "<lambda>"


def test_plan_change_later_revision_supersedes():
    route = route_by_name("cmd.plan-changed")
    message = route.contract.decode((EXAMPLES / "cmd.PlanChanged.xml").read_bytes())
    assert route.supersession.key(message) == "HV2026110300017"
    assert route.supersession.revision(message) == message.plan_revision


def test_only_revisioned_flows_are_superseded():
    assert [r.name for r in ROUTES if r.supersession] == ["mkt.energization-time-set", "cmd.plan-changed"]


def test_route_by_name():
    assert isinstance(route_by_name("pms.black-map-published"), Route)
    with pytest.raises(KeyError) as caught:
        route_by_name("pms.nothing")
    assert "mkt.supply-plan-pushed" in str(caught.value)
