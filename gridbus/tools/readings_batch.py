"""Daily frozen readings batches as meter data collection writes them (flow 9), for the examples,
``gridbus simulate``, ``gridbus demo``, the tests and ``bench/readings.py``.

``Batch`` describes one part; ``Batch.xml()`` writes it as ``DailyFrozenPublished`` in UTF-8, GBK or
GB18030. ``good_records(...)`` makes consistent records for a run of metering points (registers
that grow day by day from a value derived from the point's number, tariffs that sum to the total),
so a batch for the next day passes every quality rule against the one before.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Iterable
from xml.sax.saxutils import escape

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
