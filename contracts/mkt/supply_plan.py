"""SupplyPlanPushed: marketing pushes the full supply plan (供电方案) after the joint field survey.

Flow 1 of the high-voltage new installation (高压业扩新装), mkt -> cmd. Example:
``contracts/examples/mkt.SupplyPlanPushed.json``. Units: kV, kVA. Times: ISO 8601 with offset.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, AwareDatetime, Field

from gridbus.contracts.categories import CategoryCode
from gridbus.contracts.identifiers import customer_id_problems
from gridbus.contracts.mkt.base import APPLICATION_NO, JsonInbound, StrictModel, Text, xml_safe

Code = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
Kilovolts = Annotated[Decimal, Field(gt=0, le=1000, max_digits=8, decimal_places=3)]
KilovoltAmperes = Annotated[Decimal, Field(gt=0, le=10_000_000, max_digits=12, decimal_places=3)]


def customer_id_number(value: str) -> str:
    """A customer's id number is an 18-character resident identity number with its GB 11643 check,
    or, for an organisation, a unified social credit code with both of its checks."""
    problem = customer_id_problems(value)
    if problem is not None:
        raise ValueError(problem)  # names the rule, never the number (personal data)
    return value


class Customer(StrictModel):
    """Personal data: kept out of logs (repr) and out of canonical events."""

    name: Annotated[str, Field(min_length=1, max_length=100, repr=False), AfterValidator(xml_safe)]
    contact_phone: Annotated[str, Field(pattern=r"^\+?[0-9][0-9 -]{5,19}$", repr=False)]
    id_number: Annotated[
        str | None, Field(pattern=r"^[0-9A-Z]{18}$", repr=False), AfterValidator(customer_id_number)
    ] = None


class SupplyPoint(StrictModel):
    """A power supply point (电源点): the substation and line the customer is fed from."""

    substation: Text
    line: Text
    power_source: Literal["main", "backup"]


class AccessPlan(StrictModel):
    supply_voltage_kv: Kilovolts
    contract_capacity_kva: KilovoltAmperes
    supply_points: Annotated[tuple[SupplyPoint, ...], Field(min_length=1, max_length=20)]


class MeteringPoint(StrictModel):
    """A metering point (计量点). ``ct_ratio``/``pt_ratio`` are multipliers (200/5 A -> 40)."""

    metering_point_id: Annotated[str, Field(pattern=r"^[0-9A-Za-z-]{1,32}$")]
    category: CategoryCode  # one of contracts/categories.py, e.g. large_industrial (大工业)
    voltage_kv: Kilovolts
    ct_ratio: Annotated[int, Field(ge=1, le=100_000)]
    pt_ratio: Annotated[int, Field(ge=1, le=100_000)]


class MeteringPlan(StrictModel):
    metering_points: Annotated[tuple[MeteringPoint, ...], Field(min_length=1, max_length=100)]


class BillingPlan(StrictModel):
    tariff_category: Code
    max_demand_basis: Literal["capacity", "demand", "none"]  # 按容量 / 按需量 / 不计基本电费


class Transformer(StrictModel):
    model: Text  # e.g. SCB13-800/10
    capacity_kva: KilovoltAmperes


class CustomerEquipmentPlan(StrictModel):
    transformers: Annotated[tuple[Transformer, ...], Field(max_length=100)]


class SupplyPlanPushed(JsonInbound):
    message_type: ClassVar[str] = "SupplyPlanPushed"

    application_no: Annotated[str, Field(pattern=APPLICATION_NO)]
    customer: Customer
    access_plan: AccessPlan
    metering_plan: MeteringPlan
    billing_plan: BillingPlan
    customer_equipment_plan: CustomerEquipmentPlan
    intended_energization_time: AwareDatetime
    plan_revision: Annotated[int, Field(ge=1)]
    surveyed_at: AwareDatetime
