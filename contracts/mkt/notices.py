"""What gridbus tells marketing: black-map publication (flow 3) and plan changes (flow 4)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from gridbus.contracts.mkt.base import JsonOutbound, StrictModel
from gridbus.contracts.times import ChinaTime


class BlackMapNotice(JsonOutbound):
    """The operating-state graph (黑图) is published: marketing may organise joint energization."""

    message_type: ClassVar[str] = "BlackMapNotice"

    application_no: str
    graph_id: str
    graph_version: int
    published_at: ChinaTime
    substation: str
    feeder: str
    equipment_count: Annotated[int, Field(ge=0)]
    may_energize: Literal[True] = True
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
