"""PlanChanged: the command center changed the access plan during design (方案变更消息).

Flow 4, cmd -> mkt. XML in namespace ``urn:gridbus:cmd:plan-change:1``, checked against
``plan_changed.v1.xsd``. Example: ``contracts/examples/cmd.PlanChanged.xml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts import xml

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

        top = xml.child_texts(root, NAMESPACE, _FIELDS)
        fields = {
            "application_no": top["ApplicationNo"],
            "plan_revision": top["PlanRevision"],
            "changed_at": top["ChangedAt"],
            "change_reason": top["ChangeReason"],
            "changes": [_change(xml.child_texts(change, NAMESPACE, _CHANGE_FIELDS)) for change in xml.children(root, NAMESPACE, "Changes/Change")],
            "changed_by": top["ChangedBy"],
        }
        return xml.build_model(cls, fields, contract=cls.__name__)


_FIELDS = ("ApplicationNo", "PlanRevision", "ChangedAt", "ChangeReason", "ChangedBy")
_CHANGE_FIELDS = ("Section", "Field", "OldValue", "NewValue")


def _change(texts: dict) -> dict:
    return {"section": texts["Section"], "field": texts["Field"], "old_value": texts["OldValue"], "new_value": texts["NewValue"]}
