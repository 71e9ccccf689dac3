"""Flow 8 writes a ``market-point`` record per market metering point when ownership is established
(at signing, or when the schedule falls due), which the readings flow reads; nothing before."""

from __future__ import annotations

from datetime import timedelta

from gridbus.contracts.internal import OwnershipDue
from gridbus.contracts.metering_point import MARKET_POINT, MarketPointData
from gridbus.mappings.retail import bindings
from tests.unit import test_retail_rules as retail

NOW, bound, decide = retail.NOW, retail.bound, retail.decide
#: The retail rules' fixtures: an in-memory store and a sales company with an accepted archive.
store, company = retail.store, retail.company


def market_points(store) -> dict[str, MarketPointData]:
    keys = ("MP-LI-1", "MP-GCI-1", "MP-RES-1")
    return {k: MarketPointData.from_data(r.data) for k, r in store.state.get_records(MARKET_POINT, keys).items()}


def test_ownership_established_at_signing_puts_its_market_points_from_the_effective_time(store, company):
    bound(store, company, "U1", 8)  # effective on the contract period's first day (1 December)
    points = market_points(store)
    assert set(points) == {"MP-LI-1", "MP-GCI-1"}  # the residential point is not in the market
    assert {p.since for p in points.values()} == {NOW + timedelta(days=8)}
    assert {(p.user_unit, p.credit_code) for p in points.values()} == {("U1", company)}


def test_a_scheduled_ownership_puts_them_only_when_it_falls_due(store, company):
    bound(store, company, "U1", 40)
    assert market_points(store) == {}
    [schedule] = store.schedules.pending()
    decide(store, bindings.decide_ownership_due, OwnershipDue.model_validate(schedule.payload), "d1",
           now=NOW + timedelta(days=25))
    assert set(market_points(store)) == {"MP-LI-1", "MP-GCI-1"}
