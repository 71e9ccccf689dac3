"""Marketing system (营销2.0) contracts: JSON on AMQP both ways."""

from gridbus.contracts.mkt.agreement_draft import AgreementDraftReviewed
from gridbus.contracts.mkt.energization_completed import EnergizationCompleted
from gridbus.contracts.mkt.energization_time import EnergizationTimeSet
from gridbus.contracts.mkt.notices import BlackMapNotice, OutagePlanNotice, PlanChange, PlanChangeNotice, ProjectNotice
from gridbus.contracts.mkt.retail import (
    AgreementDraftRequested,
    BillingSchemeAdjustment,
    ContractChangeRequired,
    ConvertedMeteringPoint,
    FieldChange,
    OwnershipEstablished,
    RelationshipDissolutionRequired,
    RetailMeteringPoint,
)
from gridbus.contracts.mkt.supply_plan import SupplyPlanPushed

__all__ = [
    "AgreementDraftRequested",
    "AgreementDraftReviewed",
    "BillingSchemeAdjustment",
    "BlackMapNotice",
    "ContractChangeRequired",
    "ConvertedMeteringPoint",
    "EnergizationCompleted",
    "EnergizationTimeSet",
    "FieldChange",
    "OutagePlanNotice",
    "OwnershipEstablished",
    "PlanChange",
    "PlanChangeNotice",
    "ProjectNotice",
    "RelationshipDissolutionRequired",
    "RetailMeteringPoint",
    "SupplyPlanPushed",
]
