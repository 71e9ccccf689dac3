"""BlackMapPublished: PMS has published the operating-state graph (黑图) of a new installation.

Flow 3, pms -> mkt. XML in namespace ``urn:gridbus:pms:black-map:1``, checked against
``black_map_published.v1.xsd``. Example: ``contracts/examples/pms.BlackMapPublished.xml``
(and the same document in GBK: ``pms.BlackMapPublished.gbk.xml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts import xml

NAMESPACE = "urn:gridbus:pms:black-map:1"
SCHEMA = Path(__file__).with_name("black_map_published.v1.xsd")

EquipmentKind = Literal[
    "PowerTransformer", "Breaker", "Disconnector", "LoadBreakSwitch", "Fuse", "ACLineSegment",
    "BusbarSection", "CurrentTransformer", "PotentialTransformer", "SurgeArrester", "EnergyConsumer",
]


class EquipmentItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    equipment_id: str
    kind: EquipmentKind
    name: str


class BlackMapPublished(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "BlackMapPublished"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    application_no: str
    graph_id: str
    graph_version: Annotated[int, Field(ge=1)]
    published_at: AwareDatetime
    substation: str
    feeder: str
    equipment: Annotated[tuple[EquipmentItem, ...], Field(min_length=1)]
    reviewer: str

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "BlackMapPublished")
        xml.validate(root, SCHEMA)

        top = _FIELDS.read(root)
        fields = {
            "application_no": top["ApplicationNo"],
            "graph_id": top["GraphId"],
            "graph_version": top["GraphVersion"],
            "published_at": top["PublishedAt"],
            "substation": top["Substation"],
            "feeder": top["Feeder"],
            "equipment": [
                _ITEM_FIELDS.read(item)
                for item in xml.grandchildren(root, NAMESPACE, "Equipment", "Item")
            ],
            "reviewer": top["Reviewer"],
        }
        return xml.build_model(cls, fields, contract=cls.__name__)


_FIELDS = xml.ChildTexts(
    NAMESPACE, ("ApplicationNo", "GraphId", "GraphVersion", "PublishedAt", "Substation", "Feeder", "Reviewer")
)
_ITEM_FIELDS = xml.ChildTexts(NAMESPACE, ("EquipmentId", "Kind", "Name"), ("equipment_id", "kind", "name"))
