"""UserUnitReviewPassed: the trading center's formal review of a retail user unit passed (零售用户审核).

Flow 6, tc -> gridbus: starts gridbus's own review, then the tripartite agreement (flow 7) and
ownership establishment (flow 8). Routing key ``user-unit.review-passed`` on ``tc.out``. XML in
namespace ``urn:gridbus:tc:user-unit-review:1``, checked against ``user_unit_review_passed.v1.xsd``.
Example: ``contracts/examples/tc.UserUnitReviewPassed.xml``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from gridbus.contracts import xml

NAMESPACE = "urn:gridbus:tc:user-unit-review:1"
SCHEMA = Path(__file__).with_name("user_unit_review_passed.v1.xsd")

#: Marketing's metering-point categories. Large-industrial (大工业) and general commercial/industrial
#: (一般工商业) points become market retail metering points when the user joins the retail market.
MeteringCategory = Literal["large_industrial", "general_commercial_industrial", "residential", "agricultural"]


class RetailMeteringPoint(BaseModel):
    """A metering point (计量点) of a retail user, as marketing numbers it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metering_point_id: str
    category: MeteringCategory


class UserUnitReviewPassed(BaseModel):
    """period_start/period_end: the contract period's first and last day; period_end is after period_start.

    user_name: personal data, kept out of repr (and out of anything sent on).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_type: ClassVar[str] = "UserUnitReviewPassed"
    max_bytes: ClassVar[int] = xml.DEFAULT_MAX_BYTES

    user_unit_id: str
    reviewed_at: AwareDatetime
    customer_no: str
    user_name: str = Field(repr=False)
    sales_company_credit_code: str
    period_start: date
    period_end: date
    metering_points: Annotated[tuple[RetailMeteringPoint, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _period_ends_after_it_starts(self) -> Self:
        if self.period_end <= self.period_start:
            raise ValueError(
                f"PeriodEnd {self.period_end.isoformat()} must be after PeriodStart {self.period_start.isoformat()}"
            )
        return self

    @classmethod
    def decode(cls, body: bytes) -> Self:
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "UserUnitReviewPassed")
        xml.validate(root, SCHEMA)

        top = _FIELDS.read(root)
        fields = {
            "user_unit_id": top["UserUnitId"],
            "reviewed_at": top["ReviewedAt"],
            "customer_no": top["CustomerNo"],
            "user_name": top["UserName"],
            "sales_company_credit_code": top["SalesCompanyCreditCode"],
            "period_start": top["PeriodStart"],
            "period_end": top["PeriodEnd"],
            "metering_points": [
                _POINT_FIELDS.read(point)
                for point in xml.grandchildren(root, NAMESPACE, "MeteringPoints", "MeteringPoint")
            ],
        }
        return xml.build_model(cls, fields, contract=cls.__name__)


_FIELDS = xml.ChildTexts(
    NAMESPACE,
    ("UserUnitId", "ReviewedAt", "CustomerNo", "UserName", "SalesCompanyCreditCode", "PeriodStart", "PeriodEnd"),
)
_POINT_FIELDS = xml.ChildTexts(NAMESPACE, ("MeteringPointId", "Category"), ("metering_point_id", "category"))
