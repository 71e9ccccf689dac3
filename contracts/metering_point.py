"""What gridbus holds of a metering point (计量点), shared by the flows that need it.

Marketing (the customer-service platform) is the system of record for metering points (seed 003
Table 1). The master-data flow (flow 10) keeps what it accepted as a state record of kind
``metering-point`` under the metering point's business code; the readings flow (flow 9) reads
the multiplier and the daily consumption cap from it, and the retail flows read its category.
This module is the one place that says how such a record's ``data`` looks, so the writer and the
readers cannot drift apart. Decimals are stored as strings: JSON has no exact decimal.

A second kind, ``market-point``, says since when a metering point is in the retail market: the
retail flows write it when a binding's ownership is established (flow 8), the readings flow reads
it to choose what goes to the trading center.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

METERING_POINT = "metering-point"
MARKET_POINT = "market-point"


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


@dataclass(frozen=True)
class MeteringPointData:
    """A metering point as the master data gives it.

    multiplier: the meter's CT ratio x PT ratio; a reading's registers times it is primary-side energy.
    contracted_capacity_kva: the contracted (报装) capacity; with 24 h it bounds a day's consumption.
    category_code: the metering category (see the category code table), None when not given.
    customer: the customer's business code the point belongs to, None when not given.
    """

    multiplier: Decimal | None = None
    contracted_capacity_kva: Decimal | None = None
    category_code: str | None = None
    customer: str | None = None

    def to_data(self) -> dict[str, Any]:
        return {
            "multiplier": None if self.multiplier is None else str(self.multiplier),
            "contracted_capacity_kva": (
                None if self.contracted_capacity_kva is None else str(self.contracted_capacity_kva)
            ),
            "category_code": self.category_code,
            "customer": self.customer,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "MeteringPointData":
        """Read a stored record's data; fields it lacks (or cannot be read) are None."""
        return cls(
            multiplier=_decimal(data.get("multiplier")),
            contracted_capacity_kva=_decimal(data.get("contracted_capacity_kva")),
            category_code=data.get("category_code") or None,
            customer=data.get("customer") or None,
        )


@dataclass(frozen=True)
class MarketPointData:
    """A metering point in the retail market: from ``since`` (the ownership's effective time),
    for user unit ``user_unit``, bound to the sales company with ``credit_code``."""

    since: datetime
    user_unit: str
    credit_code: str

    def to_data(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "user_unit": self.user_unit, "credit_code": self.credit_code}

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "MarketPointData":
        return cls(datetime.fromisoformat(data["since"]), data["user_unit"], data["credit_code"])
