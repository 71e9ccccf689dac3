"""PlanChanged: the command center changed the access plan during design (方案变更消息).

Flow 4, cmd -> mkt. XML in namespace ``urn:gridbus:cmd:plan-change:1``, checked against
``plan_changed.v1.xsd``. Example: ``contracts/examples/cmd.PlanChanged.xml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gridbus.contracts import xml

NAMESPACE = "urn:gridbus:cmd:plan-change:1"
SCHEMA = Path(__file__).with_name("plan_changed.v1.xsd")


class Change(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    section: Literal["access", "metering", "billing", "equipment"]
    field: str
    old_value: str
    new_value: str


class PlanChanged(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "PlanChanged"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    application_no: str
    plan_revision: Annotated[int, Field(ge=1)]
    changed_at: AwareDatetime
    change_reason: str
    changes: Annotated[tuple[Change, ...], Field(min_length=1)]
    changed_by: str

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "PlanChanged")
        xml.validate(root, SCHEMA)

        top = _FIELDS.read(root)
        fields = {
            "application_no": top["ApplicationNo"],
            "plan_revision": top["PlanRevision"],
            "changed_at": top["ChangedAt"],
            "change_reason": top["ChangeReason"],
            "changes": [
                _CHANGE_FIELDS.read(change)
                for change in xml.grandchildren(root, NAMESPACE, "Changes", "Change")
            ],
            "changed_by": top["ChangedBy"],
        }
        return xml.build_model(cls, fields, contract=cls.__name__)


_FIELDS = xml.ChildTexts(NAMESPACE, ("ApplicationNo", "PlanRevision", "ChangedAt", "ChangeReason", "ChangedBy"))
_CHANGE_FIELDS = xml.ChildTexts(
    NAMESPACE, ("Section", "Field", "OldValue", "NewValue"), ("section", "field", "old_value", "new_value")
)
