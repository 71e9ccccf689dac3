"""High-voltage new installation as durable state: one record per application (flows 1-4).

Each application (业务申请编号) has one record in the store (kind ``hv-application``, key the
application number) that the four routes' decisions read and write, one message at a time:

- **Plan revisions** (``plan_revision``) are numbered by the plan's owner, marketing: a supply
  plan (flow 1) carries marketing's revision, and gridbus holds the latest. The command center
  changes the plan during design (flow 4) by proposing the *next* revision, latest + 1; a change
  numbered otherwise (a gap, or a revision already held, e.g. marketing's own revision that
  crossed the change) is refused as ``out-of-sequence`` and the reason names the revision gridbus
  holds. A supply plan whose revision is not newer than one held from a plan change is refused
  the same way. Older revisions of marketing's own plans arriving late are superseded (the
  route's ``Supersession``), as before.
- **Intended energization time**: flow 2 is the authority once it has spoken. Marketing sends
  the time again on every change with its own revision; the plan's time is the first word only.
  So a supply plan delivered after a flow-2 revision is held carries the held flow-2 time, not
  the time in the plan's body, and the trace says which one went out.
- **Black maps** (flow 3) realise one plan revision: a black map whose plan revision is older
  than the latest gridbus holds does not allow energization (``may_energize`` false, with why).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from gridbus.contracts.base import MappingContext
from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.errors import OutOfSequence
from gridbus.contracts.mkt import EnergizationTimeSet, SupplyPlanPushed
from gridbus.contracts.pms import BlackMapPublished
from gridbus.contracts.state import Decision, State

KIND = "hv-application"

#: Who gave the latest plan revision gridbus holds.
FROM_MARKETING = "marketing's supply plan"
FROM_COMMAND_CENTER = "a plan change from the command center"


def application_no(message: Any) -> str:
    return message.application_no


def trace_keys(message: Any) -> tuple[str, ...]:
    return (message.application_no,)


def held(state: State, application: str) -> dict[str, Any]:
    """The application's record as a dict to change, or a new one."""
    record = state.get(KIND, application)
    return dict(record.data) if record else {"application_no": application, "plan_revision": None}


# -- flow 1: supply plan ----------------------------------------------------------------------------


def decide_supply_plan(plan: SupplyPlanPushed, state: State, now: datetime) -> Decision:
    decision = Decision()
    application, revision = plan.application_no, plan.plan_revision
    data = held(state, application)
    latest = data["plan_revision"]
    if latest is not None and revision <= latest:
        raise OutOfSequence(
            f"supply plan {application} revision {revision} is not newer than plan revision {latest} that gridbus "
            f"holds from {data['plan_from']}; marketing numbers plan revisions: push revision {latest + 1} or later"
        )
    data.update(plan_revision=revision, plan_from=FROM_MARKETING, plan_at=now.isoformat())
    energization = data.get("energization")
    if energization is None:
        decision.result = {"intended_energization_time": plan.intended_energization_time.isoformat(), "from": "plan"}
        what = f"plan revision {revision} held; intended energization time {plan.intended_energization_time.isoformat()} from the plan"
    else:
        decision.result = {
            "intended_energization_time": energization["time"],
            "from": f"energization-time revision {energization['revision']}",
        }
        what = (
            f"plan revision {revision} held; intended energization time {energization['time']} of energization-time "
            f"revision {energization['revision']} kept, the plan's {plan.intended_energization_time.isoformat()} not applied"
        )
    decision.put(KIND, application, data)
    decision.change([application], what)
    return decision


def intended_energization_time(plan: SupplyPlanPushed, ctx: MappingContext) -> datetime:
    """The time the supply plan's outputs carry: the decision's (a held flow-2 revision wins), or
    the plan's own where a mapping runs without a decision."""
    decided = ctx.decision.get("intended_energization_time")
    return datetime.fromisoformat(decided) if decided else plan.intended_energization_time


# -- flow 2: intended energization time -----------------------------------------------------------


def decide_energization_time(message: EnergizationTimeSet, state: State, now: datetime) -> Decision:
    """Older revisions never get here (the route's supersession): the one decided is the newest."""
    decision = Decision()
    data = held(state, message.application_no)
    time = message.intended_energization_time.isoformat()
    data["energization"] = {"time": time, "revision": message.revision, "set_at": message.set_at.isoformat()}
    decision.put(KIND, message.application_no, data)
    decision.change(
        [message.application_no], f"intended energization time {time} (revision {message.revision}) held; it wins over any plan's"
    )
    return decision


# -- flow 4: plan change -----------------------------------------------------------------------------


def decide_plan_change(change: PlanChanged, state: State, now: datetime) -> Decision:
    """A plan change from the command center must carry the next revision, latest + 1. The same
    change again (same revision, same change time) is a repeat; anything else is refused. With no
    plan held yet (gridbus started after the plan was pushed) there is nothing to check against:
    the change is accepted as it stands, and the trace says so."""
    decision = Decision()
    application, revision = change.application_no, change.plan_revision
    data = held(state, application)
    latest, changed_at = data["plan_revision"], change.changed_at.isoformat()
    if latest == revision and data.get("plan_from") == FROM_COMMAND_CENTER and data.get("plan_changed_at") == changed_at:
        decision.result = {"decision": "repeat"}
        decision.change([application], f"plan change revision {revision} again: already held, nothing sent")
        return decision
    if latest is not None and revision != latest + 1:
        raise OutOfSequence(
            f"plan change {application} revision {revision} from the command center does not follow plan revision "
            f"{latest} that gridbus holds (from {data['plan_from']}); marketing numbers plan revisions, so a change "
            f"must carry revision {latest + 1}"
        )
    data.update(plan_revision=revision, plan_from=FROM_COMMAND_CENTER, plan_changed_at=changed_at)
    decision.put(KIND, application, data)
    decision.result = {"decision": "accepted"}
    decision.change(
        [application],
        f"plan revision {revision} held from the command center's change"
        + ("" if latest is not None else " (no earlier revision held: accepted as it stands)"),
    )
    return decision


def is_repeat(ctx: MappingContext) -> bool:
    """The route decided this message repeats one already handled: nothing to send."""
    return ctx.decision.get("decision") == "repeat"


# -- flow 3: black map -----------------------------------------------------------------------------


def decide_black_map(black_map: BlackMapPublished, state: State, now: datetime) -> Decision:
    """May marketing energize on this graph? Not when it realises an older plan revision than the
    latest gridbus holds, nor when PMS did not say which one it realises. A revision newer than
    gridbus's (a plan change still on its way) does not hold energization. Older graph versions
    never get here (the route's supersession)."""
    decision = Decision()
    application, realised = black_map.application_no, black_map.plan_revision
    data = held(state, application)
    latest = data["plan_revision"]
    hold = None
    if realised is None:
        hold = "the black map does not say which plan revision it realises"
    elif latest is not None and realised < latest:
        hold = f"the black map realises plan revision {realised}, but plan revision {latest} ({data['plan_from']}) is newer"
    data["black_map"] = {
        "graph_id": black_map.graph_id,
        "graph_version": black_map.graph_version,
        "plan_revision": realised,
        "may_energize": hold is None,
    }
    decision.put(KIND, application, data)
    decision.result = {"may_energize": hold is None, "hold_reason": hold}
    decision.change(
        [application],
        f"black map {black_map.graph_id} version {black_map.graph_version}: "
        + ("marketing may energize" if hold is None else f"energization held: {hold}"),
    )
    return decision
