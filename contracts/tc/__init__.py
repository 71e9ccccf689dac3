"""Trading center (电力交易中心) contracts: XML it publishes on AMQP, SOAP requests it receives."""

from gridbus.contracts.tc.sales_company_archive import SalesCompanyArchivePushed, Shareholder
from gridbus.contracts.tc.tripartite_agreement import TripartiteAgreementSigned
from gridbus.contracts.tc.user_unit_review import RetailMeteringPoint, UserUnitReviewPassed

__all__ = [
    "RetailMeteringPoint",
    "SalesCompanyArchivePushed",
    "Shareholder",
    "TripartiteAgreementSigned",
    "UserUnitReviewPassed",
]
