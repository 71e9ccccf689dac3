"""PMS -> marketing: the black map is published (flow 3), so marketing may organise energization."""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.mkt import BlackMapNotice
from gridbus.contracts.pms import BlackMapPublished


def black_map_notice(message: BlackMapPublished, ctx: MappingContext) -> BlackMapNotice:
    """Whether marketing may energize on this graph is the route's decision (``hv_application``)."""
    return BlackMapNotice(
        application_no=message.application_no,
        graph_id=message.graph_id,
        graph_version=message.graph_version,
        plan_revision=message.plan_revision,
        published_at=message.published_at,
        substation=message.substation,
        feeder=message.feeder,
        equipment_count=len(message.equipment),
        may_energize=ctx.decision["may_energize"],
        hold_reason=ctx.decision.get("hold_reason"),
        notified_at=ctx.now,
    )
