"""What gridbus tells marketing: black-map publication (flow 3) and plan changes (flow 4)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AwareDatetime, Field

from gridbus.contracts.mkt.base import JsonOutbound, StrictModel


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
    published_at: AwareDatetime
    substation: str
    feeder: str
    equipment_count: Annotated[int, Field(ge=0)]
    may_energize: bool
    hold_reason: str | None = None
    notified_at: AwareDatetime


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
    changed_at: AwareDatetime
    change_reason: str
    changes: tuple[PlanChange, ...]
    notified_at: AwareDatetime
