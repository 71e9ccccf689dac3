"""SalesCompanyArchivePushed: the trading center pushes a sales company's archive (售电公司档案).

Flow 5, tc -> gridbus -> tc (archive feedback) and mkt (contract change, relationship
dissolution). Routing key ``sales-company.archive-pushed`` on ``tc.out``. XML in namespace
``urn:gridbus:tc:sales-company-archive:1``, checked against ``sales_company_archive_pushed.v1.xsd``.
Example: ``contracts/examples/tc.SalesCompanyArchivePushed.xml`` (and the same document in GBK:
``tc.SalesCompanyArchivePushed.gbk.xml``).

The contract refuses only what cannot be an archive at all. Completeness and the validity of the
credit code are the archive review's questions, answered to the trading center: an archive with
missing business fields or a credit code such as ``P42040113310410`` decodes.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gridbus.contracts import xml
from gridbus.contracts.tc.blank import blank_to_none

NAMESPACE = "urn:gridbus:tc:sales-company-archive:1"
SCHEMA = Path(__file__).with_name("sales_company_archive_pushed.v1.xsd")

CompanyStatus = Literal["active", "deregistered"]


class Shareholder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    share_percent: Annotated[Decimal, Field(ge=0, le=100)] | None = None


class SalesCompanyArchivePushed(BaseModel):
    """One revision of a sales company's archive. Optional fields are None when not given.

    registered_capital_10k_yuan: registered capital in 10,000 yuan (万元).
    legal_representative: personal data, kept out of repr (and out of anything sent to marketing).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "SalesCompanyArchivePushed"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    archive_id: str
    archive_revision: Annotated[int, Field(ge=1)]
    pushed_at: AwareDatetime
    credit_code: Annotated[str, Field(min_length=1, max_length=64)]
    status: CompanyStatus
    name: str | None = None
    short_name: str | None = None
    nature: str | None = None
    address: str | None = None
    registration_place: str | None = None
    registered_capital_10k_yuan: Annotated[Decimal, Field(ge=0)] | None = None
    shareholders: tuple[Shareholder, ...] = ()
    established_on: date | None = None
    legal_representative: str | None = Field(None, repr=False)
    effective_date: date | None = None

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "SalesCompanyArchivePushed")
        xml.validate(root, SCHEMA)

        top = _FIELDS.read(root)
        fields = {
            "archive_id": top["ArchiveId"],
            "archive_revision": top["ArchiveRevision"],
            "pushed_at": top["PushedAt"],
            "credit_code": top["CreditCode"],
            "status": top["Status"],
            **{key: blank_to_none(top[element]) for element, key in _OPTIONAL.items()},
            "shareholders": [
                {key: blank_to_none(value) for key, value in _SHAREHOLDER_FIELDS.read(shareholder).items()}
                for shareholder in xml.grandchildren(root, NAMESPACE, "Shareholders", "Shareholder")
            ],
        }
        return xml.build_model(cls, fields, contract=cls.__name__)

    def fields_for_comparison(self) -> dict[str, str | None]:
        """The business fields as plain text, to compare with what marketing holds.

        None when not given. Decimals without trailing zeros (``20000.00`` -> ``20000``), dates in
        ISO 8601, shareholders as ``name(percent%)`` (``name`` when no percent) joined by ``; ``.
        Includes legal_representative: personal data, for comparison only.
        """
        return {
            "name": self.name,
            "short_name": self.short_name,
            "credit_code": self.credit_code,
            "nature": self.nature,
            "address": self.address,
            "registration_place": self.registration_place,
            "registered_capital_10k_yuan": _plain(self.registered_capital_10k_yuan),
            "shareholders": "; ".join(_shareholder(s) for s in self.shareholders) or None,
            "established_on": _iso(self.established_on),
            "legal_representative": self.legal_representative,
            "status": self.status,
            "effective_date": _iso(self.effective_date),
        }


def _plain(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f") if value else "0"


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _shareholder(shareholder: Shareholder) -> str:
    if shareholder.share_percent is None:
        return shareholder.name
    return f"{shareholder.name}({_plain(shareholder.share_percent)}%)"


# Optional elements -> model fields: absent, empty or whitespace-only means None.
_OPTIONAL = {
    "Name": "name",
    "ShortName": "short_name",
    "Nature": "nature",
    "Address": "address",
    "RegistrationPlace": "registration_place",
    "RegisteredCapital": "registered_capital_10k_yuan",
    "EstablishedOn": "established_on",
    "LegalRepresentative": "legal_representative",
    "EffectiveDate": "effective_date",
}
_FIELDS = xml.ChildTexts(NAMESPACE, ("ArchiveId", "ArchiveRevision", "PushedAt", "CreditCode", "Status", *_OPTIONAL))
_SHAREHOLDER_FIELDS = xml.ChildTexts(NAMESPACE, ("Name", "SharePercent"), ("name", "share_percent"))
