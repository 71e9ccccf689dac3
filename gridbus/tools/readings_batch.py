"""Daily frozen readings batches as meter data collection writes them (flow 9), for the examples,
``gridbus simulate``, ``gridbus demo``, the tests and ``bench/readings.py``.

``Batch`` describes one part; ``Batch.xml()`` writes it as ``DailyFrozenPublished`` in UTF-8, GBK or
GB18030. ``good_records(...)`` makes consistent records for a run of metering points (registers
that grow day by day from a value derived from the point's number, tariffs that sum to the total),
so a batch for the next day passes every quality rule against the one before.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Iterable
import uuid
from xml.sax.saxutils import escape

from gridbus.contracts.mdc import DailyFrozenPublished
from gridbus.contracts.metering_point import MARKET_POINT, METERING_POINT, MarketPointData, MeteringPointData
from gridbus.contracts.state import Decision
from gridbus.mappings.readings import decision as readings
from gridbus.workers.store import Store

CHINA = timezone(timedelta(hours=8))
NAMESPACE = "urn:gridbus:mdc:daily-frozen:1"

#: The GBK examples' supply units (供电单位).
ORG_NAMES = {"43401": "国网长沙供电公司", "43402": "国网株洲供电公司", "43403": "国网湘潭供电公司"}


@dataclass(frozen=True)
class Record:
    meter: str
    point: str
    data_date: date
    collected_at: datetime
    total: Decimal
    tariffs: tuple[Decimal, Decimal, Decimal, Decimal]
    source: str = "auto"
    resolution: Decimal = Decimal("0.01")
    multiplier: Decimal = Decimal("1")

    def xml(self) -> str:
        r1, r2, r3, r4 = self.tariffs
        return (
            f"<Record><MeterAssetNo>{self.meter}</MeterAssetNo><MeteringPointId>{self.point}</MeteringPointId>"
            f"<DataDate>{self.data_date.isoformat()}</DataDate><CollectedAt>{self.collected_at.isoformat()}</CollectedAt>"
            f"<Source>{self.source}</Source><PAP_R>{self.total}</PAP_R><PAP_R1>{r1}</PAP_R1><PAP_R2>{r2}</PAP_R2>"
            f"<PAP_R3>{r3}</PAP_R3><PAP_R4>{r4}</PAP_R4><Resolution>{self.resolution}</Resolution>"
            f"<Multiplier>{self.multiplier}</Multiplier></Record>"
        )


@dataclass(frozen=True)
class Batch:
    batch_id: str
    data_date: date
    records: tuple[Record, ...]
    part_no: int = 1
    part_count: int = 1
    org_no: str = "43401"
    org_name: str | None = "国网长沙供电公司"
    record_count: int | None = None  # None: the number of records

    def xml(self, encoding: str = "UTF-8") -> bytes:
        name = f"<OrgName>{escape(self.org_name)}</OrgName>" if self.org_name is not None else ""
        count = len(self.records) if self.record_count is None else self.record_count
        head = (
            f'<?xml version="1.0" encoding="{encoding}"?>\n<DailyFrozenPublished xmlns="{NAMESPACE}">'
            f"<BatchId>{self.batch_id}</BatchId><PartNo>{self.part_no}</PartNo><PartCount>{self.part_count}</PartCount>"
            f"<RecordCount>{count}</RecordCount><DataDate>{self.data_date.isoformat()}</DataDate>"
            f"<OrgNo>{self.org_no}</OrgNo>{name}<Records>\n"
        )
        body = "\n".join(r.xml() for r in self.records)
        text = head + body + "\n</Records></DailyFrozenPublished>\n"
        return text.encode(encoding.lower())

    def with_records(self, records: Iterable[Record]) -> "Batch":
        return replace(self, records=tuple(records))


def point_id(n: int) -> str:
    return f"MP43{n:011d}"


def meter_no(n: int, generation: int = 0) -> str:
    return f"MA{generation:02d}{n:012d}"


def register_on(n: int, day: date) -> Decimal:
    """The total register of point ``n`` at the end of ``day``: a start from the point's number
    and 10-40 kWh a day."""
    start = 1000 + (n * 7919) % 90_000
    daily = 10 + n % 31
    return Decimal(start + daily * (day - date(2026, 1, 1)).days).quantize(Decimal("0.01"))


def split(total: Decimal) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """Tariff registers that sum exactly to ``total``: 10 % sharp, 30 % peak, 35 % flat, the rest valley."""
    cent = Decimal("0.01")
    sharp, peak, flat = ((total * Decimal(p)).quantize(cent) for p in ("0.10", "0.30", "0.35"))
    return sharp, peak, flat, total - sharp - peak - flat


def collected_on(day: date, minute: int = 75) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0, 0), CHINA) + timedelta(minutes=minute)


def good_record(n: int, day: date, *, multiplier: Decimal = Decimal("1"), minute: int = 75) -> Record:
    total = register_on(n, day)
    return Record(meter_no(n), point_id(n), day, collected_on(day, minute), total, split(total), multiplier=multiplier)


def good_records(points: Iterable[int], day: date) -> list[Record]:
    return [good_record(n, day) for n in points]



# -- simulated parts (gridbus simulate) ------------------------------------------------------------------

#: The problems ``simulated_parts`` puts in its bad records, in turn: each one breaks a rule of the
#: record alone, so it is bad whatever the store holds.
SIMULATED_PROBLEMS = ("tariff-sum-mismatch", "negative-value", "multiplier-invalid", "date-mismatch")


def spoiled(record: Record, problem: str) -> Record:
    """``record`` with ``problem`` (one of ``SIMULATED_PROBLEMS``)."""
    if problem == "tariff-sum-mismatch":
        return replace(record, tariffs=(record.tariffs[0] + Decimal("1.00"), *record.tariffs[1:]))
    if problem == "negative-value":
        return replace(record, tariffs=(Decimal("-1.00"), *record.tariffs[1:]))
    if problem == "multiplier-invalid":
        return replace(record, multiplier=Decimal("0"))
    if problem == "date-mismatch":
        return replace(record, data_date=record.data_date - timedelta(days=1))
    raise ValueError(f"no simulated problem {problem!r}; known: {', '.join(SIMULATED_PROBLEMS)}")


def simulated_parts(count: int, start: int, *, size: int, bad_share: float, day: date | None = None) -> Iterable[bytes]:
    """``count`` parts of one batch, ``size`` records each for metering points of their own
    (``start`` keeps two runs apart), ``bad_share`` of them (0..1, spread evenly) bad in turn
    as ``SIMULATED_PROBLEMS`` lists."""
    if not 1 <= size <= 10_000:
        raise ValueError(f"a part holds 1 to 10,000 records, not {size}")
    if not 0 <= bad_share <= 1:
        raise ValueError(f"the share of bad records is between 0 and 1, not {bad_share}")
    day = day or (datetime.now(CHINA).date() - timedelta(days=1))
    batch_id = f"MDC-SIM-{day:%Y%m%d}-{start:06d}"
    bad = round(size * bad_share)
    every = size / bad if bad else 0
    for part in range(count):
        first = (start % 100_000) * 100_000 + part * size
        records = [good_record(first + i, day) for i in range(size)]
        for k in range(bad):
            i = int(k * every)
            records[i] = spoiled(records[i], SIMULATED_PROBLEMS[k % len(SIMULATED_PROBLEMS)])
        yield Batch(batch_id, day, tuple(records), part_no=part + 1, part_count=count).xml()

# -- a story with one record of every problem kind (the demo and the tests) ----------------------------
#
# ``problem_history(store)`` writes what the problem records are judged on, through the decision
# itself (as the worker commits it); ``thousand_with_problems()`` is a part of 1,000 records, good
# ones for points 1..987 (their history: ``previous_day``) and one of each problem kind.

DAY = date(2026, 12, 2)
NOW = datetime(2026, 12, 3, 2, 0, tzinfo=CHINA)


def decide(store: Store, batch: Batch, message_id: str, now: datetime = NOW) -> dict:
    """Decode the part and decide it on ``store``, committed as the pipeline commits it; the result."""
    part = DailyFrozenPublished.decode(batch.xml())
    view = store.state.view()
    decision = readings.decide(part, view, now)
    if not store.state.commit_decision("mdc.daily-frozen-published", message_id, decision, view.read, now):
        raise RuntimeError(f"part {part.part} was decided already, or its state changed meanwhile")
    return decision.result


def seed(store: Store, puts: list[tuple[str, str, dict]]) -> None:
    """Write records as a decision would (a master-data or retail decision, say)."""
    decision = Decision()
    for kind, key, data in puts:
        decision.put(kind, key, data)
    view = store.state.view()
    if not store.state.commit_decision("readings.seed", str(uuid.uuid4()), decision, view.read, NOW):
        raise RuntimeError("seeding the store was refused")


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


