"""Marketing -> PMS: energization done (送电完成), so PMS puts the new equipment in service."""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.mkt import EnergizationCompleted
from gridbus.contracts.pms import EnergizationCompletedNotice


def energization_completed(message: EnergizationCompleted, ctx: MappingContext) -> EnergizationCompletedNotice:
    """No staff id: PMS learns what was energized on which black map, and when."""
    return EnergizationCompletedNotice(
        message_id=ctx.message_id,
        application_no=message.application_no,
        project_no=message.project_no,
        graph_id=message.graph_id,
        graph_version=message.graph_version,
        outage_plan_no=message.outage_plan_no,
        energized_at=message.energized_at,
        notified_at=ctx.now,
    )
