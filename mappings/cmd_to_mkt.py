"""Command center -> marketing: production changed the plan during design (flow 4)."""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.mkt import PlanChange, PlanChangeNotice
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
