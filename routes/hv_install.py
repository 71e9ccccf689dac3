"""High-voltage new installation (高压业扩新装): the flows between marketing, PMS and the command
center (seed 003 Fig. 4): flows 1-4, and the project numbers, the maintenance outage and
energization done that marketing needs to organise 送电."""

from __future__ import annotations

from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.cmd.outage import OutagePlanned
from gridbus.contracts.mkt import EnergizationCompleted, EnergizationTimeSet, SupplyPlanPushed
from gridbus.contracts.pms import BlackMapPublished, ProjectCreated
from gridbus.mappings import cmd_to_mkt, events, hv_application, mkt_to_cmd, mkt_to_pms, pms_to_mkt
from gridbus.mappings.hv_application import application_no
from gridbus.routes.model import RetryPolicy, Route, Source, Step, Supersession, Target

#: The command center's SOAP service may be down for maintenance windows: 8 attempts, 5 s doubling to 10 min.
RETRY = RetryPolicy(attempts=8, first_delay_s=5, max_delay_s=600)

EVENTS = Target("events")


def energization_time_revision(message: EnergizationTimeSet) -> int:
    return message.revision


def graph_version(message: BlackMapPublished) -> int:
    return message.graph_version


def outage_plan_no(message: OutagePlanned) -> str:
    return message.outage_plan_no


def outage_revision(message: OutagePlanned) -> int:
    return message.revision


def plan_revision(message: SupplyPlanPushed) -> int:
    return message.plan_revision


SUPPLY_PLAN_PUSHED = Route(
    name="mkt.supply-plan-pushed",
    source=Source(system="mkt", routing_key="supply-plan.pushed"),
    contract=SupplyPlanPushed,
    steps=(
        Step("cmd", mkt_to_cmd.supply_plan, Target("cmd", "ReceiveSupplyPlan")),
        Step("event", events.supply_plan_created, EVENTS),
    ),
    retry=RETRY,
    # A late older plan never overwrites a newer one; a held flow-2 energization time wins over the plan's.
    supersession=Supersession(key=application_no, revision=plan_revision),
    decide=hv_application.decide_supply_plan,
    trace_keys=hv_application.trace_keys,
)

ENERGIZATION_TIME_SET = Route(
    name="mkt.energization-time-set",
    source=Source(system="mkt", routing_key="energization-time.set"),
    contract=EnergizationTimeSet,
    steps=(
        Step("cmd", mkt_to_cmd.energization_time, Target("cmd", "ReceiveEnergizationTime")),
        Step("event", events.energization_time_changed, EVENTS),
    ),
    retry=RETRY,
    supersession=Supersession(key=application_no, revision=energization_time_revision),
    decide=hv_application.decide_energization_time,
    trace_keys=hv_application.trace_keys,
)

BLACK_MAP_PUBLISHED = Route(
    name="pms.black-map-published",
    source=Source(system="pms", routing_key="black-map.published"),
    contract=BlackMapPublished,
    steps=(
        Step("mkt", pms_to_mkt.black_map_notice, Target("mkt", "black-map.notice")),
        Step("event", events.black_map_created, EVENTS),
    ),
    retry=RETRY,
    # A republished older graph version never overwrites a newer one's notice.
    supersession=Supersession(key=application_no, revision=graph_version),
    decide=hv_application.decide_black_map,
    trace_keys=hv_application.trace_keys,
)

PLAN_CHANGED = Route(
    name="cmd.plan-changed",
    source=Source(system="cmd", routing_key="plan.changed"),
    contract=PlanChanged,
    steps=(
        Step("mkt", cmd_to_mkt.plan_change_notice, Target("mkt", "plan-change.notice")),
        Step("event", events.plan_changed, EVENTS),
    ),
    retry=RETRY,
    # A change must carry the revision after the latest one gridbus holds (marketing numbers
    # them), else it is refused as out-of-sequence. No runtime supersession: a refused change
    # would claim its revision and supersede the correct one that follows it.
    decide=hv_application.decide_plan_change,
    trace_keys=hv_application.trace_keys,
)

PROJECT_CREATED = Route(
    name="pms.project-created",
    source=Source(system="pms", routing_key="project.created"),
    contract=ProjectCreated,
    steps=(Step("mkt", pms_to_mkt.project_notice, Target("mkt", "project.notice")),),
    retry=RETRY,
    trace_keys=hv_application.trace_keys,
)

OUTAGE_PLANNED = Route(
    name="cmd.outage-planned",
    source=Source(system="cmd", routing_key="outage.planned"),
    contract=OutagePlanned,
    steps=(Step("mkt", cmd_to_mkt.outage_plan_notice, Target("mkt", "outage-plan.notice")),),
    retry=RETRY,
    # A moved window is a new revision: a late older one never reaches marketing after it.
    supersession=Supersession(key=outage_plan_no, revision=outage_revision),
    trace_keys=hv_application.trace_keys,
)

ENERGIZATION_COMPLETED = Route(
    name="mkt.energization-completed",
    source=Source(system="mkt", routing_key="energization.completed"),
    contract=EnergizationCompleted,
    steps=(
        Step("cmd", mkt_to_cmd.energization_completed, Target("cmd", "ReceiveEnergizationCompleted")),
        Step("pms", mkt_to_pms.energization_completed, Target("pms", "energization.completed")),
    ),
    retry=RETRY,
    trace_keys=hv_application.trace_keys,
)

#: In Fig. 4's order within each source system, the systems' routes together.
ROUTES = (
    SUPPLY_PLAN_PUSHED, ENERGIZATION_TIME_SET, ENERGIZATION_COMPLETED,
    BLACK_MAP_PUBLISHED, PROJECT_CREATED,
    PLAN_CHANGED, OUTAGE_PLANNED,
)
