"""PMS -> marketing: the black map is published (flow 3), so marketing may organise energization;
the project and change order are created (工程编号 / 创建异动)."""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.mkt import BlackMapNotice, ProjectNotice
from gridbus.contracts.pms import BlackMapPublished, ProjectCreated


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


def project_notice(message: ProjectCreated, ctx: MappingContext) -> ProjectNotice:
    """The numbers marketing follows the works by; the PMS staff id stays behind."""
    return ProjectNotice(
        application_no=message.application_no,
        project_no=message.project_no,
        change_order_no=message.change_order_no,
        plan_revision=message.plan_revision,
        created_at=message.created_at,
        substation=message.substation,
        feeder=message.feeder,
        notified_at=ctx.now,
    )
