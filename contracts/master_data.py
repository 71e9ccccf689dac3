"""Master data of the two middle platforms (flow 10): the object types and one change's shape.

Seed 003 §2.2 splits the master data between the grid-resource platform (电网资源业务中台, whose
system here is PMS, ``pms``) and the customer-service platform (用户服务业务中台, marketing,
``mkt``); Table 1 lists which platform holds which object. ``OBJECT_TYPES`` is that table: one
entry per row, under a stable code that both contracts carry as ``ObjectType``, with the
Chinese name of the row, the platform that is its system of record, the noun it has towards the
data middle platform (a CIM class where one fits, else a gridbus extension) and, for a
relation, which object types its two ends may be.

``MasterDataChange`` is the change both platforms send (``contracts/pms/master_data.py`` as XML,
``contracts/mkt/master_data.py`` as JSON): the object, the operation, the object's revision,
when and by whom it changed, the change order (异动单号) and the changed fields with their old
and new values. A transformer carries its use (public 公变 or dedicated 专变); a relation the
business codes of both its ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from gridbus.contracts.errors import quote
from gridbus.contracts.mkt.base import StrictModel, Text as Value

GRID_RESOURCE = "pms"  # 电网资源业务中台
CUSTOMER_SERVICE = "mkt"  # 用户服务业务中台

#: Transformer uses: public (公变, a public distribution transformer of a 台区) or dedicated (专变, a customer's).
TRANSFORMER_USES = ("public", "dedicated")
#: Which system may write a transformer of each use (seed 003 §2.2: 公用变压器由生产专业维护, 专用变压器由营销专业维护).
TRANSFORMER_WRITER = {"public": GRID_RESOURCE, "dedicated": CUSTOMER_SERVICE}

#: Object types that are equipment of the grid (站线变) for the relations that name "equipment".
_EQUIPMENT = frozenset({"substation", "line", "transformer"})


@dataclass(frozen=True)
class ObjectType:
    """One row of seed 003 Table 1.

    code: the stable value of ``ObjectType`` on the wire.
    name_zh: the row as Table 1 names it.
    owner: the system of record (``pms`` or ``mkt``).
    row: the row's number in its platform's column of Table 1.
    noun: the noun of the data middle platform's message and the canonical event.
    cim: the noun is a CIM class (else a gridbus extension, ``urn:gridbus:canonical:<noun>:1``).
    ends: for a relation, the object types its first and its second end may be; None otherwise.
    """

    code: str
    name_zh: str
    owner: str
    row: int
    noun: str
    cim: bool = False
    ends: tuple[frozenset[str], frozenset[str]] | None = None

    @property
    def relation(self) -> bool:
        return self.ends is not None


def _relation(code, name_zh, owner, row, noun, first, second) -> ObjectType:
    as_set = lambda ends: frozenset({ends}) if isinstance(ends, str) else frozenset(ends)  # noqa: E731
    return ObjectType(code, name_zh, owner, row, noun, ends=(as_set(first), as_set(second)))


_TABLE_1 = (
    ObjectType("substation", "变电站信息", GRID_RESOURCE, 1, "Substation", cim=True),
    ObjectType("line", "线路信息（专线、公线）", GRID_RESOURCE, 2, "Line", cim=True),
    _relation("substation-line", "变电站与线路关系", GRID_RESOURCE, 3, "SubstationLine", "substation", "line"),
    ObjectType("transformer", "变压器信息（公变、专变）", GRID_RESOURCE, 4, "PowerTransformer", cim=True),
    _relation("line-transformer", "线路与变压器关系", GRID_RESOURCE, 5, "LineTransformer", "line", "transformer"),
    ObjectType("low-voltage-access-point", "低压接入点信息", GRID_RESOURCE, 6, "LowVoltageAccessPoint"),
    _relation("access-point-transformer-area", "低压接入点与公变台区关系", GRID_RESOURCE, 7, "AccessPointTransformerArea",
              "low-voltage-access-point", "transformer"),
    _relation("access-point-meter-box", "低压接入点与表箱资产关系", GRID_RESOURCE, 8, "AccessPointMeterBox",
              "low-voltage-access-point", "meter-box"),
    ObjectType("meter-box-graphic", "计量箱图形信息", GRID_RESOURCE, 9, "MeterBoxGraphic"),
    ObjectType("meter-box-resource", "计量箱资源信息", GRID_RESOURCE, 10, "MeterBoxResource"),
    _relation("meter-box-resource-asset", "计量箱资源与计量箱资产关系", GRID_RESOURCE, 11, "MeterBoxResourceAsset",
              "meter-box-resource", "meter-box"),
    ObjectType("station-room", "站房信息", GRID_RESOURCE, 12, "StationRoom"),
    _relation("equipment-supply-point", "电网设备(站线变)与电源点关系", GRID_RESOURCE, 13, "EquipmentSupplyPoint",
              _EQUIPMENT, "power-supply-point"),
    _relation("dedicated-transformer-customer", "专变与用户关系", GRID_RESOURCE, 14, "DedicatedTransformerCustomer",
              "transformer", "customer"),
    _relation("equipment-metering-point", "设备与计量点关系", GRID_RESOURCE, 15, "EquipmentUsagePoint",
              _EQUIPMENT, "metering-point"),
    ObjectType("power-supply-point", "电源点信息", CUSTOMER_SERVICE, 1, "PowerSupplyPoint"),
    ObjectType("metering-point", "计量点信息", CUSTOMER_SERVICE, 2, "UsagePoint", cim=True),
    _relation("supply-point-metering-point", "电源点与计量点关系", CUSTOMER_SERVICE, 3, "SupplyPointUsagePoint",
              "power-supply-point", "metering-point"),
    ObjectType("meter-box", "计量箱信息", CUSTOMER_SERVICE, 4, "MeterBox"),
    ObjectType("meter", "电能表信息", CUSTOMER_SERVICE, 5, "Meter", cim=True),
    _relation("meter-meter-box", "电能表与计量箱关系", CUSTOMER_SERVICE, 6, "MeterMeterBox", "meter", "meter-box"),
    _relation("meter-metering-point", "电能表与计量点关系", CUSTOMER_SERVICE, 7, "MeterUsagePoint", "meter", "metering-point"),
    ObjectType("customer", "用户信息", CUSTOMER_SERVICE, 8, "Customer", cim=True),
    ObjectType("structured-address", "结构化地址信息", CUSTOMER_SERVICE, 9, "ServiceLocation", cim=True),
    ObjectType("dedicated-line-billing", "专线计费信息", CUSTOMER_SERVICE, 10, "DedicatedLineBilling"),
    ObjectType("dedicated-transformer-billing", "专变计费信息", CUSTOMER_SERVICE, 11, "DedicatedTransformerBilling"),
    ObjectType("self-owned-power-source", "自备电源台账信息", CUSTOMER_SERVICE, 12, "SelfOwnedPowerSource"),
    ObjectType("power-plant", "电厂、机组信息", CUSTOMER_SERVICE, 13, "GeneratingUnit", cim=True),
    ObjectType("charging-pile", "充电桩信息", CUSTOMER_SERVICE, 14, "ChargingPile"),
)

#: Table 1 by code, in the table's order (grid-resource column, then customer-service column).
OBJECT_TYPES: dict[str, ObjectType] = {t.code: t for t in _TABLE_1}

ObjectTypeCode = Literal[
    "substation", "line", "substation-line", "transformer", "line-transformer", "low-voltage-access-point",
    "access-point-transformer-area", "access-point-meter-box", "meter-box-graphic", "meter-box-resource",
    "meter-box-resource-asset", "station-room", "equipment-supply-point", "dedicated-transformer-customer",
    "equipment-metering-point", "power-supply-point", "metering-point", "supply-point-metering-point", "meter-box",
    "meter", "meter-meter-box", "meter-metering-point", "customer", "structured-address", "dedicated-line-billing",
    "dedicated-transformer-billing", "self-owned-power-source", "power-plant", "charging-pile",
]

Operation = Literal["create", "change", "delete"]
#: The verb of the data middle platform's message and of the canonical event, per operation.
VERB_OF = {"create": "created", "change": "changed", "delete": "deleted"}

#: Business codes (业务编码) as both platforms issue them: one code, one object, across both platforms.
BUSINESS_CODE = r"^[0-9A-Za-z][0-9A-Za-z_.:-]{0,63}$"
#: Change order numbers (异动单号), e.g. ``YD2026120800031``.
CHANGE_ORDER_NO = r"^[A-Z]{1,4}[0-9]{8,20}$"
#: Staff ids of who made the change.
STAFF_ID = r"^[0-9A-Za-z_.-]{1,32}$"
#: Names of changed fields, as the platforms name their attributes (``RatedCapacity``, ``CtRatio``).
FIELD_NAME = r"^[A-Z][A-Za-z0-9]{0,63}$"
#: Most fields one change may carry.
MAX_FIELDS = 200

#: Fields holding personal data: carried to the data middle platform (which holds the customer
#: archive), never into canonical events, traces or logs.
PERSONAL_FIELDS = frozenset(
    {"CustomerName", "UserName", "ContactName", "ContactPhone", "Phone", "Mobile", "IdNumber", "LegalRepresentative",
     "Email"}
)

class FieldChange(StrictModel):
    """One changed field: its value before (absent for a new field or object) and after (absent
    when the field is cleared or the object deleted)."""

    name: Annotated[str, Field(pattern=FIELD_NAME)]
    old: Value | None = None
    new: Value | None = None


class RelationEnds(StrictModel):
    """The business codes of a relation's two ends, in the order its object type names them
    (a substation-line relation: the substation first, the line second)."""

    first: Annotated[str, Field(pattern=BUSINESS_CODE)]
    second: Annotated[str, Field(pattern=BUSINESS_CODE)]


class MasterDataChange(StrictModel):
    """One change of one master-data object, as its platform sends it.

    object_revision: the object's revision at the platform, counting its changes (1 at creation);
        a change older than the newest revision gridbus holds is superseded.
    changed_at: when the platform made the change, with its offset (+08:00).
    changed_by: staff id of who changed it (never a name).
    change_order_no: the change order (异动单号) the change was made under.
    transformer_use: public or dedicated, for a transformer and only for one.
    relation: both ends' business codes, for a relation and only for one.
    """

    message_type: ClassVar[str] = "MasterDataChanged"
    #: The system whose contract this is: the platform that sends it.
    system: ClassVar[str]

    object_type: ObjectTypeCode
    business_code: Annotated[str, Field(pattern=BUSINESS_CODE)]
    operation: Operation
    object_revision: Annotated[int, Field(ge=1)]
    changed_at: AwareDatetime
    changed_by: Annotated[str, Field(pattern=STAFF_ID)]
    change_order_no: Annotated[str, Field(pattern=CHANGE_ORDER_NO)]
    transformer_use: Literal["public", "dedicated"] | None = None
    relation: RelationEnds | None = None
    fields: Annotated[tuple[FieldChange, ...], Field(max_length=MAX_FIELDS)] = ()

    @property
    def kind(self) -> ObjectType:
        return OBJECT_TYPES[self.object_type]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        kind = self.kind
        if (self.transformer_use is None) == (kind.code == "transformer"):
            raise ValueError(
                "a transformer must name its use (public or dedicated)" if self.transformer_use is None
                else f"only a transformer has a use, not a {kind.code}"
            )
        if (self.relation is None) == kind.relation:
            raise ValueError(
                f"a {kind.code} relation must name both its ends" if self.relation is None
                else f"only a relation names ends, not a {kind.code}"
            )
        names = [f.name for f in self.fields]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ValueError(f"field {quote(duplicate)} is changed twice")
        if self.operation == "create" and any(f.old is not None for f in self.fields):
            raise ValueError("a created object has no old values")
        if self.operation == "delete" and any(f.new is not None for f in self.fields):
            raise ValueError("a deleted object has no new values")
        return self

    def trace_keys(self) -> tuple[str, ...]:
        """The business code, a relation's ends, and the change order."""
        ends = (self.relation.first, self.relation.second) if self.relation else ()
        return (self.business_code, *ends, self.change_order_no)
