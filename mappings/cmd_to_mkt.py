"""Command center -> marketing: production changed the plan during design (flow 4); the
maintenance outage energization needs is planned (检修计划)."""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.cmd.outage import OutagePlanned
from gridbus.contracts.mkt import OutagePlanNotice, PlanChange, PlanChangeNotice
from gridbus.mappings.hv_application import is_repeat


def plan_change_notice(message: PlanChanged, ctx: MappingContext) -> PlanChangeNotice | None:
    """Marketing learns the revision the change took: it numbers the plan's next one from it."""
    if is_repeat(ctx):
        return None
    return PlanChangeNotice(
        application_no=message.application_no,
        plan_revision=message.plan_revision,
        changed_at=message.changed_at,
        change_reason=message.change_reason,
        changes=tuple(
            PlanChange(section=c.section, field=c.field, old_value=c.old_value, new_value=c.new_value)
            for c in message.changes
        ),
        notified_at=ctx.now,
    )


def outage_plan_notice(message: OutagePlanned, ctx: MappingContext) -> OutagePlanNotice:
    """The window marketing organises 送电 in; the dispatcher's staff id stays behind."""
    return OutagePlanNotice(
        application_no=message.application_no,
        outage_plan_no=message.outage_plan_no,
        revision=message.revision,
        start=message.start,
        end=message.end,
        substation=message.substation,
        feeder=message.feeder,
        scope=message.scope,
        notified_at=ctx.now,
    )
