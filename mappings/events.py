"""Source messages -> canonical IEC 61968-100 events for other adapters.

Payload element names follow CIM where CIM has the idea (UsagePoint, PowerTransformer,
ACLineSegment, Substation, ratedS, nominalServiceVoltage). Events fan out to many consumers,
so they never carry personal data: no customer name, phone or id number, no staff names.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent, PayloadBuilder, payload_namespace
from gridbus.contracts.categories import category
from gridbus.contracts.canonical.payload import PayloadNode, PayloadTemplate, UnfitText
from gridbus.contracts.cmd.models import PlanChanged
from gridbus.contracts.mkt import EnergizationTimeSet, SupplyPlanPushed
from gridbus.contracts.pms import BlackMapPublished
from gridbus.contracts.errors import MappingError
from gridbus.mappings.hv_application import intended_energization_time, is_repeat
from gridbus.contracts.times import china_time

def supply_plan_created(message: SupplyPlanPushed, ctx: MappingContext) -> CanonicalEvent:
    plan = _Payload("SupplyPlan")
    root = plan.root
    plan.add(root, "mRID", message.application_no)
    plan.add(root, "revision", message.plan_revision)
    plan.add(root, "surveyedAt", message.surveyed_at)
    plan.add(root, "intendedEnergizationTime", intended_energization_time(message, ctx))
    plan.add(root, "supplyVoltage", message.access_plan.supply_voltage_kv, unit="kV")
    plan.add(root, "contractCapacity", message.access_plan.contract_capacity_kva, unit="kVA")
    for point in message.access_plan.supply_points:
        supply = plan.add(root, "SupplyPoint")
        plan.add(supply, "Substation", point.substation)
        plan.add(supply, "ACLineSegment", point.line)
        plan.add(supply, "role", point.power_source)
    for point in message.metering_plan.metering_points:
        usage = plan.add(root, "UsagePoint")
        plan.add(usage, "mRID", point.metering_point_id)
        add_category(plan, usage, point.category, ctx)
        plan.add(usage, "nominalServiceVoltage", point.voltage_kv, unit="kV")
        plan.add(usage, "ctRatio", point.ct_ratio)
        plan.add(usage, "ptRatio", point.pt_ratio)
    pricing = plan.add(root, "PricingStructure")
    plan.add(pricing, "tariffCategory", message.billing_plan.tariff_category)
    plan.add(pricing, "maxDemandBasis", message.billing_plan.max_demand_basis)
    for transformer in message.customer_equipment_plan.transformers:
        equipment = plan.add(root, "PowerTransformer")
        plan.add(equipment, "model", transformer.model)
        plan.add(equipment, "ratedS", transformer.capacity_kva, unit="kVA")
    return _event("created", plan, ctx)


def energization_time_changed(message: EnergizationTimeSet, ctx: MappingContext) -> CanonicalEvent:
    payload = _Payload("EnergizationTime")
    payload.add(payload.root, "applicationNo", message.application_no)
    payload.add(payload.root, "revision", message.revision)
    payload.add(payload.root, "intendedEnergizationTime", message.intended_energization_time)
    payload.add(payload.root, "setAt", message.set_at)
    return _event("changed", payload, ctx)


def black_map_created(message: BlackMapPublished, ctx: MappingContext) -> CanonicalEvent:
    leaves = (
        message.graph_id, _plain_text(message.graph_version), message.application_no,
        _plain_text(message.published_at), message.substation, message.feeder,
    )
    items = [(item.equipment_id, item.kind, item.name) for item in message.equipment]
    built = _BLACK_MAP.fill(leaves, items)
    if built is not None:
        return _built_event("created", "BlackMap", built, ctx)
    # Text to escape or refuse, or empty: the builder does what lxml does with it.
    return _event("created", black_map_payload(message), ctx)


def black_map_payload(message: BlackMapPublished) -> _Payload:
    """The BlackMap payload built element by element: what ``_BLACK_MAP`` writes in one go for
    plain text, and what escapes or refuses any other."""
    payload = _Payload("BlackMap")
    root = payload.root
    payload.add(root, "mRID", message.graph_id)
    payload.add(root, "version", message.graph_version)
    payload.add(root, "applicationNo", message.application_no)
    payload.add(root, "publishedAt", message.published_at)
    payload.add(root, "Substation", message.substation)
    payload.add(root, "Feeder", message.feeder)
    for item in message.equipment:
        equipment = payload.add(root, "Equipment")
        payload.add(equipment, "mRID", item.equipment_id)
        payload.add(equipment, "kind", item.kind)
        payload.add(equipment, "name", item.name)
    return payload


#: What ``black_map_created`` builds with ``_Payload`` when every value is plain text.
_BLACK_MAP = PayloadTemplate(
    "BlackMap", payload_namespace("BlackMap"),
    ("mRID", "version", "applicationNo", "publishedAt", "Substation", "Feeder"),
    "Equipment", ("mRID", "kind", "name"),
)


def plan_changed(message: PlanChanged, ctx: MappingContext) -> CanonicalEvent | None:
    if is_repeat(ctx):
        return None
    payload = _Payload("SupplyPlan")
    root = payload.root
    payload.add(root, "mRID", message.application_no)
    payload.add(root, "revision", message.plan_revision)
    payload.add(root, "changedAt", message.changed_at)
    payload.add(root, "changeReason", message.change_reason)
    for change in message.changes:
        entry = payload.add(root, "Change")
        payload.add(entry, "section", change.section)
        payload.add(entry, "field", change.field)
        payload.add(entry, "oldValue", change.old_value)
        payload.add(entry, "newValue", change.new_value)
    return _event("changed", payload, ctx)


def add_category(payload: _Payload, usage: PayloadNode, code: str, ctx: MappingContext) -> None:
    """A usage point's category as data, its code in the one table (``contracts.categories``): CIM's
    ``customerKind`` describes a customer, not a metering point. Whether it may join the retail
    market is the configured rule (``ctx.rules.market``)."""
    payload.add(usage, "meteringCategory", category(code).code)
    payload.add(usage, "marketEligible", ctx.rules.market.eligible(code))


class _Payload:
    """Builds one noun's payload element in ``urn:gridbus:canonical:<noun>:1``."""

    def __init__(self, noun: str):
        self.noun = noun
        self.namespace = payload_namespace(noun)
        self.builder = PayloadBuilder(noun, self.namespace)
        self.root = self.builder.root

    def add(self, parent: PayloadNode, name: str, value: object = None, **attributes: str) -> PayloadNode:
        if value is None or type(value) is str:
            text = value
        else:
            try:
                text = _lexical(value)
            except ValueError:
                raise MappingError(f"{self.noun}.{name}: value has characters XML cannot carry") from None
        try:
            return self.builder.add(parent, name, attributes, text)
        except UnfitText:  # refused as lxml refuses it
            raise MappingError(f"{self.noun}.{name}: value has characters XML cannot carry") from None


def _lexical(value: object) -> str:
    """XML Schema lexical form: ISO 8601 with offset +08:00 (the same instant), plain decimals,
    lowercase booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return china_time(value).isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _plain_text(value: object) -> object:
    """The text ``_Payload.add`` writes for ``value`` when that is plain; the value itself otherwise
    (a template then declines it, and ``_Payload`` makes or refuses it)."""
    if type(value) is str or value is None:
        return value
    try:
        return _lexical(value)
    except ValueError:
        return value


def _event(verb: str, payload: _Payload, ctx: MappingContext) -> CanonicalEvent:
    return _built_event(verb, payload.noun, payload.builder.build(), ctx)


def _built_event(verb: str, noun: str, payload, ctx: MappingContext) -> CanonicalEvent:
    return CanonicalEvent(
        verb=verb,
        noun=noun,
        timestamp=ctx.now,
        message_id=ctx.message_id,
        correlation_id=ctx.correlation_id,
        properties=(("sourceSystem", ctx.source_system), ("sourceMessageID", ctx.source_message_id)),
        payload=payload,
    )
