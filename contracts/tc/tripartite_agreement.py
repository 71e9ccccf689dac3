"""TripartiteAgreementSigned: the signing result of a tripartite agreement (三方协议), signed or refused.

Flow 7, tc -> gridbus: from the trading center's external signing system; a signed agreement
goes on to archival and, from its effective time, ownership establishment (flow 8). Routing key
``tripartite-agreement.signed`` on ``tc.out``. XML in namespace
``urn:gridbus:tc:tripartite-agreement:1``, checked against ``tripartite_agreement_signed.v1.xsd``.
Example: ``contracts/examples/tc.TripartiteAgreementSigned.xml``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from gridbus.contracts import xml
from gridbus.contracts.tc.blank import blank_to_none

NAMESPACE = "urn:gridbus:tc:tripartite-agreement:1"
SCHEMA = Path(__file__).with_name("tripartite_agreement_signed.v1.xsd")


class TripartiteAgreementSigned(BaseModel):
    """signed: effective_time is set, refusal_reason is None; refused: the other way round.

    valid_until: the agreement's last valid day when it outlasts the contract period it was signed
    for (a multi-year agreement); None: the contract period's last day. Only a signed agreement has one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "TripartiteAgreementSigned"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    agreement_no: str
    user_unit_id: str
    sales_company_credit_code: str
    outcome: Literal["signed", "refused"]
    decided_at: AwareDatetime
    effective_time: AwareDatetime | None = None
    refusal_reason: str | None = None
    valid_until: date | None = None

    @model_validator(mode="after")
    def _outcome_carries_its_detail(self) -> Self:
        # An agreement both signed and refused cannot be acted on: say which part contradicts.
        if self.outcome == "signed":
            if self.effective_time is None:
                raise ValueError("EffectiveTime is required when Outcome is signed")
            if self.refusal_reason is not None:
                raise ValueError("RefusalReason must not be given when Outcome is signed")
        else:
            if self.refusal_reason is None:
                raise ValueError("RefusalReason is required when Outcome is refused")
            if self.effective_time is not None:
                raise ValueError("EffectiveTime must not be given when Outcome is refused")
            if self.valid_until is not None:
                raise ValueError("ValidUntil must not be given when Outcome is refused")
        return self

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "TripartiteAgreementSigned")
        xml.validate(root, SCHEMA)

        top = _FIELDS.read(root)
        fields = {
            "agreement_no": top["AgreementNo"],
            "user_unit_id": top["UserUnitId"],
            "sales_company_credit_code": top["SalesCompanyCreditCode"],
            "outcome": top["Outcome"],
            "decided_at": top["DecidedAt"],
            "effective_time": blank_to_none(top["EffectiveTime"]),
            "refusal_reason": blank_to_none(top["RefusalReason"]),
            "valid_until": blank_to_none(top["ValidUntil"]),
        }
        return xml.build_model(cls, fields, contract=cls.__name__)


_FIELDS = xml.ChildTexts(
    NAMESPACE,
    ("AgreementNo", "UserUnitId", "SalesCompanyCreditCode", "Outcome", "DecidedAt", "EffectiveTime", "RefusalReason",
     "ValidUntil"),
)
