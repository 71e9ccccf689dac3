"""OutagePlanned: the command center planned the maintenance outage (检修计划) energization needs.

Fig. 4 of seed 003, cmd -> mkt: marketing organises joint energization (送电) inside this
window. XML in namespace ``urn:gridbus:cmd:outage-plan:1``, checked against
``outage_planned.v1.xsd``. Example: ``contracts/examples/cmd.OutagePlanned.xml``. A moved
window is a new ``revision`` of the same ``outage_plan_no``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gridbus.contracts import xml

NAMESPACE = "urn:gridbus:cmd:outage-plan:1"
SCHEMA = Path(__file__).with_name("outage_planned.v1.xsd")

_NAMES = ("ApplicationNo", "OutagePlanNo", "Revision", "Start", "End", "Substation", "Feeder", "Scope", "PlannedAt", "PlannedBy")
_FIELDS = xml.ChildTexts(
    NAMESPACE, _NAMES,
    ("application_no", "outage_plan_no", "revision", "start", "end", "substation", "feeder", "scope", "planned_at",
     "planned_by"),
)


class OutagePlanned(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "OutagePlanned"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    application_no: str
    outage_plan_no: str
    revision: Annotated[int, Field(ge=1)]
    start: AwareDatetime
    end: AwareDatetime
    substation: str
    feeder: str
    scope: str
    planned_at: AwareDatetime
    planned_by: str  # staff id: not carried on to events

    @model_validator(mode="after")
    def _a_window(self) -> Self:
        if self.end <= self.start:
            raise ValueError("End must be after Start")
        return self

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "OutagePlanned")
        xml.validate(root, SCHEMA)
        return xml.build_model(cls, _FIELDS.read(root), contract=cls.__name__)
