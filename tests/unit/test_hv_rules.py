"""The high-voltage new installation's rules, decided on a real (in-memory) store: which
energization time wins, who numbers plan revisions, what a black map allows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.errors import OutOfSequence
from gridbus.contracts.mkt import EnergizationTimeSet, SupplyPlanPushed
from gridbus.contracts.pms import BlackMapPublished
from gridbus.mappings import hv_application
from gridbus.workers.store import Store

EXAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "examples"
CHINA = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=CHINA)
APPLICATION = "HV2026110300017"


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


def supply_plan(revision: int, energization: str = "2026-12-15T09:00:00+08:00") -> SupplyPlanPushed:
    doc = json.loads((EXAMPLES / "mkt.SupplyPlanPushed.json").read_bytes())
    doc.update(plan_revision=revision, intended_energization_time=energization)
    return SupplyPlanPushed.decode(json.dumps(doc, ensure_ascii=False).encode())


def energization_time(revision: int, time: str) -> EnergizationTimeSet:
    doc = json.loads((EXAMPLES / "mkt.EnergizationTimeSet.json").read_bytes())
    doc.update(revision=revision, intended_energization_time=time)
    return EnergizationTimeSet.decode(json.dumps(doc).encode())


def plan_change(revision: int) -> PlanChanged:
    body = (EXAMPLES / "cmd.PlanChanged.xml").read_bytes()
    return PlanChanged.decode(body.replace(b"<PlanRevision>2<", f"<PlanRevision>{revision}<".encode()))


# -- item 1: the plan's energization time and flow 2's -------------------------------------------------


def test_without_a_flow_2_revision_the_plan_s_energization_time_goes_out(store):
    decision = decide(store, hv_application.decide_supply_plan, supply_plan(1), "p1")
    assert decision.result == {"intended_energization_time": "2026-12-15T09:00:00+08:00", "from": "plan"}


def test_a_held_flow_2_revision_wins_over_a_later_plan_s_energization_time(store):
    decide(store, hv_application.decide_supply_plan, supply_plan(1), "p1")
    decide(store, hv_application.decide_energization_time, energization_time(3, "2026-12-21T14:00:00+08:00"), "e3")
    decision = decide(store, hv_application.decide_supply_plan, supply_plan(2, "2026-12-15T09:00:00+08:00"), "p2")
    assert decision.result == {"intended_energization_time": "2026-12-21T14:00:00+08:00", "from": "energization-time revision 3"}
    assert "not applied" in decision.changes[0].what
    held = store.state.view().get(hv_application.KIND, APPLICATION).data
    assert held["plan_revision"] == 2 and held["energization"]["revision"] == 3


# -- item 3: what a black map allows ---------------------------------------------------------------


def black_map(plan_revision: int | None, graph_version: int = 3) -> BlackMapPublished:
    body = (EXAMPLES / "pms.BlackMapPublished.xml").read_bytes()
    body = body.replace(b"<GraphVersion>3<", f"<GraphVersion>{graph_version}<".encode())
    stated = b"" if plan_revision is None else f"<PlanRevision>{plan_revision}</PlanRevision>".encode()
    return BlackMapPublished.decode(body.replace(b"<PlanRevision>2</PlanRevision>", stated))


def test_a_black_map_of_the_latest_plan_revision_allows_energization(store):
    decide(store, hv_application.decide_supply_plan, supply_plan(2), "p2")
    decision = decide(store, hv_application.decide_black_map, black_map(2), "b1")
    assert decision.result == {"may_energize": True, "hold_reason": None}


def test_a_black_map_of_an_older_plan_revision_holds_energization(store):
    decide(store, hv_application.decide_supply_plan, supply_plan(3), "p3")
    decision = decide(store, hv_application.decide_black_map, black_map(2), "b1")
    assert decision.result["may_energize"] is False
    assert decision.result["hold_reason"] == (
        "the black map realises plan revision 2, but plan revision 3 (marketing's supply plan) is newer")


def test_a_black_map_that_does_not_name_its_plan_revision_holds_energization(store):
    decision = decide(store, hv_application.decide_black_map, black_map(None), "b1")
    assert decision.result == {"may_energize": False,
                               "hold_reason": "the black map does not say which plan revision it realises"}


def test_a_black_map_ahead_of_gridbus_s_plan_revision_allows_energization(store):
    """A plan change still on its way to gridbus is no reason to hold: nothing newer is known."""
    decide(store, hv_application.decide_supply_plan, supply_plan(1), "p1")
    assert decide(store, hv_application.decide_black_map, black_map(2), "b1").result["may_energize"] is True
    assert store.state.view().get(hv_application.KIND, APPLICATION).data["black_map"]["graph_version"] == 3


# -- item 4: who numbers plan revisions -------------------------------------------------------------


def test_a_plan_change_carrying_the_next_revision_is_accepted_and_held(store):
    decide(store, hv_application.decide_supply_plan, supply_plan(1), "p1")
    assert decide(store, hv_application.decide_plan_change, plan_change(2), "c2").result == {"decision": "accepted"}
    held = store.state.view().get(hv_application.KIND, APPLICATION).data
    assert (held["plan_revision"], held["plan_from"]) == (2, hv_application.FROM_COMMAND_CENTER)


@pytest.mark.parametrize("revision", [1, 3])
def test_a_plan_change_that_does_not_follow_the_latest_revision_is_refused_with_the_revision_held(store, revision):
    decide(store, hv_application.decide_supply_plan, supply_plan(1), "p1")
    with pytest.raises(OutOfSequence) as caught:
        decide(store, hv_application.decide_plan_change, plan_change(revision), "c")
    assert caught.value.reason == (
        f"plan change {APPLICATION} revision {revision} from the command center does not follow plan revision 1 "
        "that gridbus holds (from marketing's supply plan); marketing numbers plan revisions, so a change must "
        "carry revision 2")
    assert store.state.view().get(hv_application.KIND, APPLICATION).data["plan_revision"] == 1


def test_a_change_crossing_marketing_s_own_next_revision_is_refused_and_so_is_a_plan_behind_a_change(store):
    decide(store, hv_application.decide_supply_plan, supply_plan(1), "p1")
    decide(store, hv_application.decide_supply_plan, supply_plan(2), "p2")  # marketing's own revision 2
    with pytest.raises(OutOfSequence):
        decide(store, hv_application.decide_plan_change, plan_change(2), "c2")
    decide(store, hv_application.decide_plan_change, plan_change(3), "c3")
    with pytest.raises(OutOfSequence) as caught:
        decide(store, hv_application.decide_supply_plan, supply_plan(3), "p3")
    assert "push revision 4 or later" in caught.value.reason and "the command center" in caught.value.reason


def test_the_same_change_again_is_a_repeat_and_sends_nothing(store):
    decide(store, hv_application.decide_supply_plan, supply_plan(1), "p1")
    decide(store, hv_application.decide_plan_change, plan_change(2), "c2")
    assert decide(store, hv_application.decide_plan_change, plan_change(2), "c2-again").result == {"decision": "repeat"}


def test_a_change_with_no_plan_held_is_accepted_and_says_so(store):
    decision = decide(store, hv_application.decide_plan_change, plan_change(2), "c2")
    assert decision.result == {"decision": "accepted"} and "accepted as it stands" in decision.changes[0].what
