"""AgreementDraftReviewed: marketing has drafted, reviewed and approved (or rejected) a tripartite
agreement (三方协议: 合同起草, 合同审核, 合同审批), seed 000 §1 Fig. 2.

Flow 7, mkt -> gridbus: answers ``AgreementDraftRequested``. Only an approved draft goes on to the
trading center for signing (``ReceiveAgreementInfo``); a rejected one ends the binding and the
trading center is told the user unit's review is refused. Routing key ``agreement-draft.reviewed``
on ``mkt.out``. Example: ``contracts/examples/mkt.AgreementDraftReviewed.json``.

approved: ``rejection_reason`` is None; rejected: it says why (free text, carried to the trading
center). No personal data: the staff who reviewed are not named.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from gridbus.contracts.mkt.base import JsonInbound, Text

#: Agreement numbers and user units as gridbus and the trading center write them.
IDENTIFIER = r"^[0-9A-Za-z_.:\-]{1,80}$"


class AgreementDraftReviewed(JsonInbound):
    message_type: ClassVar[str] = "AgreementDraftReviewed"

    agreement_no: Annotated[str, Field(pattern=IDENTIFIER)]
    user_unit_id: Annotated[str, Field(pattern=IDENTIFIER)]
    sales_company_credit_code: Annotated[str, Field(min_length=1, max_length=64)]
    outcome: Literal["approved", "rejected"]
    decided_at: AwareDatetime
    rejection_reason: Text | None = None

    @model_validator(mode="after")
    def _rejection_says_why(self) -> Self:
        if self.outcome == "rejected" and self.rejection_reason is None:
            raise ValueError("rejection_reason is required when outcome is rejected")
        if self.outcome == "approved" and self.rejection_reason is not None:
            raise ValueError("rejection_reason must not be given when outcome is approved")
        return self
