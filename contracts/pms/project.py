"""ProjectCreated: production has numbered the project (工程编号) and created the change order (创建异动).

Fig. 4 of seed 003, pms -> mkt: marketing follows the works by these numbers up to acceptance
and energization. XML in namespace ``urn:gridbus:pms:project:1``, checked against
``project_created.v1.xsd``. Example: ``contracts/examples/pms.ProjectCreated.xml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gridbus.contracts import xml

NAMESPACE = "urn:gridbus:pms:project:1"
SCHEMA = Path(__file__).with_name("project_created.v1.xsd")

_NAMES = ("ApplicationNo", "ProjectNo", "ChangeOrderNo", "PlanRevision", "CreatedAt", "Substation", "Feeder", "CreatedBy")
_FIELDS = xml.ChildTexts(
    NAMESPACE, _NAMES,
    ("application_no", "project_no", "change_order_no", "plan_revision", "created_at", "substation", "feeder", "created_by"),
)


class ProjectCreated(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "ProjectCreated"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    application_no: str
    project_no: str
    change_order_no: str
    plan_revision: Annotated[int, Field(ge=1)]
    created_at: AwareDatetime
    substation: str
    feeder: str
    created_by: str  # staff id: not carried on to events

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "ProjectCreated")
        xml.validate(root, SCHEMA)
        return xml.build_model(cls, _FIELDS.read(root), contract=cls.__name__)
