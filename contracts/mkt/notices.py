"""What gridbus tells marketing: black-map publication (flow 3), plan changes (flow 4), and the
production side's project and change-order numbers and maintenance outage (seed 003 Fig. 4)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from gridbus.contracts.mkt.base import JsonOutbound, StrictModel
from gridbus.contracts.times import ChinaTime


class BlackMapNotice(JsonOutbound):
    """The operating-state graph (黑图) is published: marketing may organise joint energization
    (送电) when ``may_energize``; otherwise ``hold_reason`` says why not (the graph realises an
    older plan revision than the latest gridbus holds, or PMS did not say which one).

    plan_revision: the supply-plan revision the graph realises, as PMS stated it (None: not stated).
    """

    message_type: ClassVar[str] = "BlackMapNotice"

    application_no: str
    graph_id: str
    graph_version: int
    plan_revision: Annotated[int | None, Field(ge=1)]
    published_at: ChinaTime
    substation: str
    feeder: str
    equipment_count: Annotated[int, Field(ge=0)]
    may_energize: bool
    hold_reason: str | None = None
    notified_at: ChinaTime


class PlanChange(StrictModel):
    section: Literal["access", "metering", "billing", "equipment"]
    field: str
    old_value: str
    new_value: str


class PlanChangeNotice(JsonOutbound):
    """Production changed the access plan during design: marketing must see the new revision."""

    message_type: ClassVar[str] = "PlanChangeNotice"

    application_no: str
    plan_revision: Annotated[int, Field(ge=1)]
    changed_at: ChinaTime
    change_reason: str
    changes: tuple[PlanChange, ...]
    notified_at: ChinaTime


class ProjectNotice(JsonOutbound):
    """Production numbered the project (工程编号) and created the change order (创建异动) in PMS."""

    message_type: ClassVar[str] = "ProjectNotice"

    application_no: str
    project_no: str
    change_order_no: str
    plan_revision: Annotated[int, Field(ge=1)]
    created_at: ChinaTime
    substation: str
    feeder: str
    notified_at: ChinaTime


class OutagePlanNotice(JsonOutbound):
    """The maintenance outage (检修计划) energization needs: marketing organises 送电 inside it."""

    message_type: ClassVar[str] = "OutagePlanNotice"

    application_no: str
    outage_plan_no: str
    revision: Annotated[int, Field(ge=1)]
    start: ChinaTime
    end: ChinaTime
    substation: str
    feeder: str
    scope: str
    notified_at: ChinaTime
