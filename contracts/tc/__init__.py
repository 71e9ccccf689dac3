"""Trading center (电力交易中心) contracts: XML it publishes on AMQP, SOAP requests it receives."""

from contracts.tc.sales_company_archive import SalesCompanyArchivePushed, Shareholder
from contracts.tc.tripartite_agreement import TripartiteAgreementSigned
from contracts.tc.user_unit_review import RetailMeteringPoint, UserUnitReviewPassed

__all__ = [
    "RetailMeteringPoint",
    "SalesCompanyArchivePushed",
    "Shareholder",
    "TripartiteAgreementSigned",
    "UserUnitReviewPassed",
]
