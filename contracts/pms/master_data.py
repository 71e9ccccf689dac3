"""PmsMasterDataChanged: the grid-resource platform (PMS) changed one master-data object.

Flow 10, pms -> data middle platform. Routing key ``master-data.changed`` on ``pms.out``. XML in
namespace ``urn:gridbus:pms:master-data:1``, checked against ``master_data_changed.v1.xsd``,
UTF-8, GBK, GB2312 or GB18030 as declared. The fields are ``contracts.master_data``'s, shared with
marketing's JSON contract. Examples: ``contracts/examples/pms.MasterDataChanged.xml`` (and in
GBK: ``pms.MasterDataChanged.gbk.xml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

from gridbus.contracts import xml
from gridbus.contracts.master_data import MasterDataChange

NAMESPACE = "urn:gridbus:pms:master-data:1"
SCHEMA = Path(__file__).with_name("master_data_changed.v1.xsd")


class PmsMasterDataChanged(MasterDataChange):
    system: ClassVar[str] = "pms"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "MasterDataChanged")
        xml.validate(root, SCHEMA)
        return xml.build_model(cls, _fields(root), contract=cls.__name__)


def _fields(root) -> dict:
    top = _TOP.read(root)
    fields: dict = {name: value for name, value in top.items() if value is not None}
    if top["transformer_use"] is None:
        fields.pop("transformer_use", None)
    relation = root.find(f"{{{NAMESPACE}}}Relation")
    if relation is not None:
        fields["relation"] = _ENDS.read(relation)
    fields["fields"] = [
        {key: value for key, value in _FIELD.read(item).items() if value is not None}
        for item in xml.grandchildren(root, NAMESPACE, "Fields", "Field")
    ]
    return fields


_TOP = xml.ChildTexts(
    NAMESPACE,
    ("ObjectType", "BusinessCode", "Operation", "ObjectRevision", "ChangedAt", "ChangedBy", "ChangeOrderNo",
     "TransformerUse"),
    ("object_type", "business_code", "operation", "object_revision", "changed_at", "changed_by", "change_order_no",
     "transformer_use"),
)
_ENDS = xml.ChildTexts(NAMESPACE, ("First", "Second"), ("first", "second"))
_FIELD = xml.ChildTexts(NAMESPACE, ("Name", "Old", "New"), ("name", "old", "new"))
