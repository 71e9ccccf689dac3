"""Requests gridbus makes to the command center's SOAP service (``CommandCenterService.wsdl``).

Each request knows its WSDL operation and gives zeep its keyword arguments with ``to_soap()``:
element names exactly as in the WSDL (namespace ``urn:gridbus:cmd:service:1``), datetimes
timezone-aware, decimals as ``Decimal``. ``MessageID`` is stable across retries: the command
center applies a MessageID once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from gridbus.contracts.soap import SoapRequest as _Request
from gridbus.contracts.times import ChinaTime


class SupplyPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    substation: str
    line: str
    power_source: Literal["main", "backup"]


class MeteringPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metering_point_id: str
    category: str
    voltage_kv: Decimal
    ct_ratio: int
    pt_ratio: int


class Transformer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    capacity_kva: Decimal


class SupplyPlanDelivery(_Request):
    """Operation ReceiveSupplyPlan: the full supply plan of one application."""

    message_type: ClassVar[str] = "SupplyPlanDelivery"
    operation: ClassVar[str] = "ReceiveSupplyPlan"

    application_no: str
    customer_name: str = Field(repr=False)
    contact_phone: str = Field(repr=False)
    supply_voltage_kv: Decimal
    contract_capacity_kva: Decimal
    intended_energization_time: ChinaTime
    plan_revision: int
    supply_points: tuple[SupplyPoint, ...]
    metering_points: tuple[MeteringPoint, ...]
    tariff_category: str
    max_demand_basis: str
    transformers: tuple[Transformer, ...]

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "ApplicationNo": self.application_no,
            "CustomerName": self.customer_name,
            "ContactPhone": self.contact_phone,
            "SupplyVoltageKV": self.supply_voltage_kv,
            "ContractCapacityKVA": self.contract_capacity_kva,
            "IntendedEnergizationTime": self.intended_energization_time,
            "PlanRevision": self.plan_revision,
            "AccessPlan": {
                "SupplyPoint": [
                    {"Substation": p.substation, "Line": p.line, "PowerSource": p.power_source}
                    for p in self.supply_points
                ]
            },
            "MeteringPlan": {
                "MeteringPoint": [
                    {
                        "MeteringPointId": p.metering_point_id,
                        "Category": p.category,
                        "VoltageKV": p.voltage_kv,
                        "CTRatio": p.ct_ratio,
                        "PTRatio": p.pt_ratio,
                    }
                    for p in self.metering_points
                ]
            },
            "BillingPlan": {"TariffCategory": self.tariff_category, "MaxDemandBasis": self.max_demand_basis},
            "CustomerEquipmentPlan": {
                "Transformer": [{"Model": t.model, "CapacityKVA": t.capacity_kva} for t in self.transformers]
            },
        }


class EnergizationTimeDelivery(_Request):
    """Operation ReceiveEnergizationTime: the intended energization time, with its revision."""

    message_type: ClassVar[str] = "EnergizationTimeDelivery"
    operation: ClassVar[str] = "ReceiveEnergizationTime"

    application_no: str
    intended_energization_time: ChinaTime
    revision: int = Field(ge=1)

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "ApplicationNo": self.application_no,
            "IntendedEnergizationTime": self.intended_energization_time,
            "Revision": self.revision,
        }


class EnergizationCompletedDelivery(_Request):
    """Operation ReceiveEnergizationCompleted: the joint energization (送电) is done, at ``energized_at``."""

    message_type: ClassVar[str] = "EnergizationCompletedDelivery"
    operation: ClassVar[str] = "ReceiveEnergizationCompleted"

    application_no: str
    project_no: str
    outage_plan_no: str | None = None
    graph_id: str
    graph_version: int = Field(ge=1)
    energized_at: ChinaTime

    def to_soap(self) -> dict[str, Any]:
        return {
            **self._header(),
            "ApplicationNo": self.application_no,
            "ProjectNo": self.project_no,
            "OutagePlanNo": self.outage_plan_no,
            "GraphID": self.graph_id,
            "GraphVersion": self.graph_version,
            "EnergizedAt": self.energized_at,
        }


__all__ = ["EnergizationCompletedDelivery", "EnergizationTimeDelivery", "MeteringPoint", "SupplyPlanDelivery", "SupplyPoint", "Transformer"]
