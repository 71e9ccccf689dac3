"""Marketing system (营销2.0) contracts: JSON on AMQP both ways."""

from contracts.mkt.energization_time import EnergizationTimeSet
from contracts.mkt.notices import BlackMapNotice, PlanChange, PlanChangeNotice
from contracts.mkt.retail import (
    AgreementDraftRequested,
    BillingSchemeAdjustment,
    ContractChangeRequired,
    ConvertedMeteringPoint,
    FieldChange,
    OwnershipEstablished,
    RelationshipDissolutionRequired,
    RetailMeteringPoint,
)
from contracts.mkt.supply_plan import SupplyPlanPushed

__all__ = [
    "AgreementDraftRequested",
    "BillingSchemeAdjustment",
    "BlackMapNotice",
    "ContractChangeRequired",
    "ConvertedMeteringPoint",
    "EnergizationTimeSet",
    "FieldChange",
    "OwnershipEstablished",
    "PlanChange",
    "PlanChangeNotice",
    "RelationshipDissolutionRequired",
    "RetailMeteringPoint",
    "SupplyPlanPushed",
]
