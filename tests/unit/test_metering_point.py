"""The shared shape of metering-point and market-point records: what one flow writes the other reads."""

from datetime import datetime
from decimal import Decimal

from gridbus.contracts.metering_point import MarketPointData, MeteringPointData


def test_metering_point_round_trip_keeps_decimals_exact():
    point = MeteringPointData(Decimal("1200"), Decimal("630.5"), "100", "C-0001")
    data = point.to_data()
    assert data["multiplier"] == "1200" and data["contracted_capacity_kva"] == "630.5"
    assert MeteringPointData.from_data(data) == point


def test_metering_point_fields_missing_or_unreadable_are_none():
    assert MeteringPointData.from_data({"multiplier": "x1", "category_code": ""}) == MeteringPointData()


def test_market_point_round_trip():
    since = datetime.fromisoformat("2026-12-01T00:00:00+08:00")
    point = MarketPointData(since, "UU-1", "91110000MA01ABCDE1")
    assert MarketPointData.from_data(point.to_data()) == point
