"""Readings parts for the flow 9 tests: a decision run on a real store as the runtime runs it,
and a part of 1,000 records with one record of every problem kind."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from gridbus.contracts.mdc import DailyFrozenPublished
from gridbus.contracts.metering_point import MARKET_POINT, METERING_POINT, MarketPointData, MeteringPointData
from gridbus.contracts.state import Decision
from gridbus.mappings.readings import decision as readings
from gridbus.tools.readings_batch import CHINA, Batch, Record, good_record, meter_no, point_id
from gridbus.workers.store import Store

DAY = date(2026, 12, 2)
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=CHINA)


def decide(store: Store, batch: Batch, message_id: str, now: datetime = NOW) -> dict:
    """Decode the part and decide it on ``store``, committed as the pipeline commits it; the result."""
    part = DailyFrozenPublished.decode(batch.xml())
    view = store.state.view()
    decision = readings.decide(part, view, now)
    assert store.state.commit_decision("mdc.daily-frozen-published", message_id, decision, view.read, now)
    return decision.result


def seed(store: Store, puts: list[tuple[str, str, dict]]) -> None:
    """Write records as a decision would (a master-data or retail decision, say)."""
    decision = Decision()
    for kind, key, data in puts:
        decision.put(kind, key, data)
    view = store.state.view()
    assert store.state.commit_decision("test.seed", f"seed-{id(puts)}-{len(puts)}", decision, view.read, NOW)


def metering_point(n: int, multiplier: str = "1", capacity_kva: str | None = "630") -> tuple[str, str, dict]:
    data = MeteringPointData(multiplier=Decimal(multiplier), contracted_capacity_kva=None if capacity_kva is None else Decimal(capacity_kva))
    return (METERING_POINT, point_id(n), data.to_data())


def market_point(n: int, since: datetime) -> tuple[str, str, dict]:
    return (MARKET_POINT, point_id(n), MarketPointData(since, f"RU{n:06d}", "91350200776049653A").to_data())


def previous_day(points, day: date = DAY) -> Batch:
    return Batch(f"MDC-PREV-{day:%Y%m%d}", day - timedelta(days=1), tuple(good_record(n, day - timedelta(days=1)) for n in points))


def problem_records(day: date = DAY) -> dict[str, Record]:
    """One record of each problem kind, for points 1901-1913 (their history: ``problem_history``)."""
    def base(n: int) -> Record:
        return good_record(n, day)

    r = {}
    rec = base(1901)
    r["negative-value"] = replace(rec, tariffs=(Decimal("-1.00"), *rec.tariffs[1:]))
    rec = base(1902)
    r["tariff-sum-mismatch"] = replace(rec, tariffs=(rec.tariffs[0] + Decimal("0.05"), *rec.tariffs[1:]))
    rec = base(1903)
    r["multiplier-mismatch"] = replace(rec, multiplier=Decimal("40"))
    rec = base(1904)
    r["register-backwards"] = replace(rec, total=rec.total - Decimal("100.00"), tariffs=(rec.tariffs[0], rec.tariffs[1], rec.tariffs[2], rec.tariffs[3] - Decimal("100.00")))
    rec = base(1905)
    r["consumption-implausible"] = replace(rec, total=rec.total + Decimal("20000.00"), tariffs=(*rec.tariffs[:3], rec.tariffs[3] + Decimal("20000.00")))
    rec = base(1906)
    r["date-mismatch"] = replace(rec, data_date=day - timedelta(days=5), collected_at=rec.collected_at)
    r["first-reading"] = base(1907)  # no history
    r["gap"] = base(1908)  # history three days old
    rec = base(1909)
    r["meter-exchange"] = replace(rec, meter=meter_no(1909, generation=1), total=Decimal("5.00"), tariffs=(Decimal("0.50"), Decimal("1.50"), Decimal("1.75"), Decimal("1.25")))
    r["register-rollover"] = Record(meter_no(1910), point_id(1910), day, good_record(1910, day).collected_at, Decimal("12.00"),
                                    (Decimal("1.00"), Decimal("2.00"), Decimal("3.00"), Decimal("6.00")))
    r["repeat"] = good_record(1911, day)  # accepted already, same CollectedAt
    r["correction"] = good_record(1912, day, minute=600)  # accepted already, collected later
    r["older-than-accepted"] = good_record(1913, day)  # history is of the next day
    return r


def problem_history(store: Store, day: date = DAY) -> None:
    """The state the problem records are judged on: last readings, master data of point 1903."""
    yesterday = day - timedelta(days=1)
    old = [good_record(n, yesterday) for n in (1901, 1902, 1903, 1904, 1905, 1906, 1909)]
    old.append(good_record(1908, day - timedelta(days=3)))
    old.append(Record(meter_no(1910), point_id(1910), yesterday, good_record(1910, yesterday).collected_at, Decimal("99990.00"),
                      (Decimal("0.00"), Decimal("0.00"), Decimal("0.00"), Decimal("99990.00"))))
    decide(store, Batch("MDC-HIST-A", yesterday, tuple(r for r in old if r.data_date == yesterday)), "hist-a")
    decide(store, Batch("MDC-HIST-B", day - timedelta(days=3), tuple(r for r in old if r.data_date != yesterday)), "hist-b")
    decide(store, Batch("MDC-HIST-C", day, (good_record(1911, day), good_record(1912, day))), "hist-c")
    decide(store, Batch("MDC-HIST-D", day + timedelta(days=1), (good_record(1913, day + timedelta(days=1)),)), "hist-d")
    seed(store, [metering_point(1903, multiplier="80"), metering_point(1905, capacity_kva="630")])


def thousand_with_problems(batch_id: str = "MDC-20261202-43401-0100", day: date = DAY) -> tuple[Batch, dict[str, int]]:
    """1,000 records: good ones for points 1..987 (with their history from ``previous_day``), and one
    record of each problem kind; the problem kinds' record indices."""
    problems = problem_records(day)
    good = [good_record(n, day) for n in range(1, 1001 - len(problems))]
    records = good + list(problems.values())
    at = {code: len(good) + i + 1 for i, code in enumerate(problems)}
    return Batch(batch_id, day, tuple(records)), at


def fast_route():
    """The readings route with retries in fractions of a second, for tests."""
    from gridbus.routes.meter_readings import DAILY_FROZEN_PUBLISHED
    from gridbus.routes.model import RetryPolicy

    return replace(DAILY_FROZEN_PUBLISHED, retry=RetryPolicy(attempts=6, first_delay_s=0.3, max_delay_s=1.0))


#: For ``gridbus worker --routes-module tests.support.readings:ROUTES`` in a process of its own.
ROUTES = (fast_route(),)
