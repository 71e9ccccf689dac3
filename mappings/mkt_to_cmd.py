"""Marketing -> command center: the supply plan (flow 1), the intended energization time (flow 2),
and energization done (送电完成)."""

from __future__ import annotations

from gridbus.contracts.base import MappingContext
from gridbus.contracts.cmd.soap import (
    EnergizationCompletedDelivery,
    EnergizationTimeDelivery,
    MeteringPoint,
    SupplyPlanDelivery,
    SupplyPoint,
    Transformer,
)
from gridbus.contracts.mkt import EnergizationCompleted, EnergizationTimeSet, SupplyPlanPushed
from gridbus.mappings.hv_application import intended_energization_time


def supply_plan(message: SupplyPlanPushed, ctx: MappingContext) -> SupplyPlanDelivery:
    """The command center needs the customer's name and phone to arrange the outage with them.
    The energization time is the route decision's: a held flow-2 revision wins over the plan's."""
    access = message.access_plan
    return SupplyPlanDelivery(
        message_id=ctx.message_id,
        correlation_id=ctx.correlation_id,
        sent_at=ctx.now,
        application_no=message.application_no,
        customer_name=message.customer.name,
        contact_phone=message.customer.contact_phone,
        supply_voltage_kv=access.supply_voltage_kv,
        contract_capacity_kva=access.contract_capacity_kva,
        intended_energization_time=intended_energization_time(message, ctx),
        plan_revision=message.plan_revision,
        supply_points=tuple(
            SupplyPoint(substation=p.substation, line=p.line, power_source=p.power_source)
            for p in access.supply_points
        ),
        metering_points=tuple(
            MeteringPoint(
                metering_point_id=p.metering_point_id,
                category=p.category,
                voltage_kv=p.voltage_kv,
                ct_ratio=p.ct_ratio,
                pt_ratio=p.pt_ratio,
            )
            for p in message.metering_plan.metering_points
        ),
        tariff_category=message.billing_plan.tariff_category,
        max_demand_basis=message.billing_plan.max_demand_basis,
        transformers=tuple(
            Transformer(model=t.model, capacity_kva=t.capacity_kva)
            for t in message.customer_equipment_plan.transformers
        ),
    )


def energization_time(message: EnergizationTimeSet, ctx: MappingContext) -> EnergizationTimeDelivery:
    return EnergizationTimeDelivery(
        message_id=ctx.message_id,
        correlation_id=ctx.correlation_id,
        sent_at=ctx.now,
        application_no=message.application_no,
        intended_energization_time=message.intended_energization_time,
        revision=message.revision,
    )


def energization_completed(message: EnergizationCompleted, ctx: MappingContext) -> EnergizationCompletedDelivery:
    """The command center closes the outage and the application's works on it."""
    return EnergizationCompletedDelivery(
        message_id=ctx.message_id,
        correlation_id=ctx.correlation_id,
        sent_at=ctx.now,
        application_no=message.application_no,
        project_no=message.project_no,
        outage_plan_no=message.outage_plan_no,
        graph_id=message.graph_id,
        graph_version=message.graph_version,
        energized_at=message.energized_at,
    )
