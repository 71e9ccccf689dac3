"""BlackMapPublished: PMS has published the operating-state graph (黑图) of a new installation.

Flow 3, pms -> mkt. XML in namespace ``urn:gridbus:pms:black-map:1``, checked against
``black_map_published.v1.xsd``. Example: ``contracts/examples/pms.BlackMapPublished.xml``
(and the same document in GBK: ``pms.BlackMapPublished.gbk.xml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gridbus.contracts import xml

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
    #: the supply-plan revision the graph realises; None when PMS did not say (see the XSD)
    plan_revision: Annotated[int | None, Field(ge=1)] = None
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

        fields = _fields_in_order(root) or _fields_by_name(root)
        return xml.build_model(cls, fields, contract=cls.__name__)


def _fields_by_name(root) -> dict:
    top = _FIELDS.read(root)
    return {
        "application_no": top["ApplicationNo"],
        "graph_id": top["GraphId"],
        "graph_version": top["GraphVersion"],
        "plan_revision": top["PlanRevision"],
        "published_at": top["PublishedAt"],
        "substation": top["Substation"],
        "feeder": top["Feeder"],
        "equipment": [_ITEM_FIELDS.read(item) for item in xml.grandchildren(root, NAMESPACE, "Equipment", "Item")],
        "reviewer": top["Reviewer"],
    }


def _fields_in_order(root) -> dict | None:
    """``_fields_by_name`` by position, for a schema-valid document with nothing but elements
    where it matters: the schema's sequence then fixes which child is which. None otherwise
    (``parse_xml`` drops comments and processing instructions, so that is a safeguard only)."""
    top = list(root)
    plan_revision = None
    if len(top) == 9:  # the optional PlanRevision is there, fourth in the sequence
        plan_revision = top.pop(3).text or ""
    if len(top) != 8:
        return None
    items = list(top[6])
    if not all(len(item) == 3 for item in items):
        return None
    application_no, graph_id, graph_version, published_at, substation, feeder, _, reviewer = [
        child.text or "" for child in top
    ]
    equipment = []
    for item in items:
        equipment_id, kind, name = item
        equipment.append({"equipment_id": equipment_id.text or "", "kind": kind.text or "", "name": name.text or ""})
    return {
        "application_no": application_no,
        "graph_id": graph_id,
        "graph_version": graph_version,
        "plan_revision": plan_revision,
        "published_at": published_at,
        "substation": substation,
        "feeder": feeder,
        "equipment": equipment,
        "reviewer": reviewer,
    }


_FIELDS = xml.ChildTexts(
    NAMESPACE,
    ("ApplicationNo", "GraphId", "GraphVersion", "PlanRevision", "PublishedAt", "Substation", "Feeder", "Reviewer"),
)
_ITEM_FIELDS = xml.ChildTexts(NAMESPACE, ("EquipmentId", "Kind", "Name"), ("equipment_id", "kind", "name"))
