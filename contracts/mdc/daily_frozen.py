"""DailyFrozenPublished: one part of a batch of daily frozen meter readings (flow 9, mdc -> gridbus).

XML in namespace ``urn:gridbus:mdc:daily-frozen:1``, checked against
``daily_frozen_published.v1.xsd``; UTF-8, GBK or GB18030 as declared. Examples:
``contracts/examples/mdc.DailyFrozenPublished.xml`` (1,000 records),
``mdc.DailyFrozenPublished.small.xml`` and ``mdc.DailyFrozenPublished.gbk.xml``.

A part holds up to 10,000 records, so a record is a named tuple with ``Decimal`` registers rather
than a pydantic model per record: the document is parsed once (the safe path in
``contracts.xml``), validated once against the XSD, and the records' fields read by position in
one XPath pass, which the schema's sequence fixes. What the schema cannot say is checked here: ``RecordCount`` is the
number of records, ``PartNo`` is within ``PartCount``. The content of a record (negative values,
registers that disagree) is the quality rules' to judge, record by record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar, NamedTuple

from lxml import etree

from gridbus.contracts import xml
from gridbus.contracts.errors import ContractViolation

NAMESPACE = "urn:gridbus:mdc:daily-frozen:1"
SCHEMA = Path(__file__).with_name("daily_frozen_published.v1.xsd")

#: Most records one part may hold (the schema says the same).
MAX_RECORDS = 10_000
#: Largest body of a part: 10,000 records of about 420 bytes each fit with room to spare.
MAX_BYTES = 8 * 1024 * 1024

#: The tariff registers in order: sharp, peak, flat, valley (尖、峰、平、谷).
TARIFFS = ("sharp", "peak", "flat", "valley")


class FrozenReading(NamedTuple):
    """One daily frozen record: the meter's registers at the end of ``data_date``, in kWh on the
    secondary side; ``tariffs`` are PAP_R1..PAP_R4, ``index`` the record's position (1-based).

    ``day`` and ``collected`` are the record's DataDate and CollectedAt as sent (validated by the
    schema, so ISO 8601: dates compare as text); ``data_date`` and ``collected_at`` read them as
    a date and a datetime where one is needed (most records need neither)."""

    index: int
    meter_asset_no: str
    metering_point_id: str
    day: str
    collected: str
    source: str
    total: Decimal
    tariffs: tuple[Decimal, Decimal, Decimal, Decimal]
    resolution: Decimal
    multiplier: Decimal

    @property
    def data_date(self) -> date:
        return date.fromisoformat(self.day)

    @property
    def collected_at(self) -> datetime:
        return datetime.fromisoformat(self.collected)

    @property
    def xpath(self) -> str:
        """Where the record is in its part, for a reply's ``Error/xpath``."""
        return f"/DailyFrozenPublished/Records/Record[{self.index}]"


@dataclass(frozen=True, slots=True)
class DailyFrozenPublished:
    message_type: ClassVar[str] = "DailyFrozenPublished"
    max_bytes: ClassVar[int] = MAX_BYTES

    batch_id: str
    part_no: int
    part_count: int
    record_count: int
    data_date: date
    org_no: str
    org_name: str | None
    readings: tuple[FrozenReading, ...]

    @property
    def part(self) -> str:
        """``BATCH/2`` of ``BATCH``: how the trace and the reply name this part."""
        return f"{self.batch_id}/{self.part_no}"

    @classmethod
    def decode(cls, body: bytes) -> "DailyFrozenPublished":
        root = xml.parse_xml(body, max_bytes=cls.max_bytes)
        xml.expect_root(root, NAMESPACE, "DailyFrozenPublished")
        xml.validate(root, SCHEMA)
        top = list(root)
        org_name = top[6].text or "" if len(top) == 8 else None
        batch_id, part_no, part_count, record_count, data_date, org_no = (e.text or "" for e in top[:6])
        readings = _readings(top[-1])
        message = cls(
            batch_id=batch_id,
            part_no=int(part_no),
            part_count=int(part_count),
            record_count=int(record_count),
            data_date=date.fromisoformat(data_date),
            org_no=org_no,
            org_name=org_name,
            readings=readings,
        )
        if message.record_count != len(readings):
            raise ContractViolation(
                f"DailyFrozenPublished {message.part}: RecordCount says {message.record_count} records, "
                f"the part holds {len(readings)}"
            )
        if message.part_no > message.part_count:
            raise ContractViolation(
                f"DailyFrozenPublished {message.part}: PartNo {message.part_no} is beyond PartCount {message.part_count}"
            )
        return message


#: Every field's text of every record, in document order: the schema fixes twelve fields a
#: record, in this order, none empty, and the parser drops comments and processing instructions,
#: so each field is one text node.
_FIELD_TEXTS = etree.XPath("r:Record/*/text()", namespaces={"r": NAMESPACE}, smart_strings=False)
_FIELDS = 12


def _readings(records: etree._Element) -> tuple[FrozenReading, ...]:
    """The records of a validated part, read in one pass over their fields' texts and converted
    column by column (``map`` over ten thousand values of a field, not a call per record)."""
    texts = _FIELD_TEXTS(records)
    count = len(records)
    if len(texts) != count * _FIELDS:  # not as the schema and parser promise: read field by field
        texts = [field.xpath("string()") for record in records for field in record]
    column = [texts[i::_FIELDS] for i in range(_FIELDS)]
    meter, point, day, collected, source, total, r1, r2, r3, r4, resolution, multiplier = column
    decimals = [list(map(Decimal, values)) for values in (total, r1, r2, r3, r4, resolution, multiplier)]
    total, r1, r2, r3, r4, resolution, multiplier = decimals
    return tuple(map(
        FrozenReading._make,
        zip(range(1, count + 1), meter, point, map(str.strip, day), map(str.strip, collected), source, total,
            zip(r1, r2, r3, r4), resolution, multiplier),
    ))
