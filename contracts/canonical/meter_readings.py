"""IEC 61968-9 ``MeterReadings`` in the IEC 61968-100 ``Message`` envelope: what marketing gets.

One message per batch part (flow 9): ``Verb`` created for new readings, changed for corrections,
``Noun`` MeterReadings. Each ``MeterReading`` names its ``Meter`` and ``UsagePoint`` (the
metering point) and holds five ``Readings``, the daily frozen registers, each with its
``ReadingType`` reference (``READING_TYPES``), the register value in kWh on the meter's
secondary side, the end of the data date as ``timeStamp``, and the record's
``ReadingQualities``. The ``Meter`` carries the record's multiplier (CT x PT), so billing can
take the primary side.

Ten thousand records make a body of a few megabytes: it is written with string templates in one
pass (``encode``), not built as an element tree. Every value is either checked by the inbound
schema to be plain (identifiers: letters, digits, ``-_.``; decimals; times) or escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, NamedTuple

from gridbus.contracts.canonical.envelope import NAMESPACE
from gridbus.contracts.canonical.payload import escape_text

#: The IEC 61968-9 MeterReadings namespace (CIM 2011 profile).
METER_READINGS_NAMESPACE = "http://iec.ch/TC57/2011/MeterReadings#"

#: ReadingType of each register, by the 18-field code of IEC 61968-9 Annex C: macroPeriod 11
#: (daily), accumulation 1 (bulk quantity: a register's value), flowDirection 1 (forward),
#: commodity 1 (electricity, secondary metered), measurementKind 12 (energy), TOU 0 (total) or
#: 1-4 (sharp, peak, flat, valley), multiplier 3 (kilo), unit 72 (Wh).
READING_TYPES = tuple(f"11.0.0.1.1.1.12.0.0.0.0.{tou}.0.0.0.3.72.0" for tou in range(5))


class MeterReading(NamedTuple):
    """One record as marketing gets it: the total and the four TOU registers (sharp, peak, flat,
    valley) and the multiplier as decimals, written as ``str`` writes a ``Decimal``."""

    meter: str
    usage_point: str
    time_stamp: str
    collected_at: str
    total: Decimal
    tariffs: tuple[Decimal, Decimal, Decimal, Decimal]
    multiplier: Decimal
    qualities: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeterReadingsMessage:
    content_type: ClassVar[str] = "application/xml"
    message_type: ClassVar[str] = "MeterReadings"

    verb: str  # created or changed
    timestamp: datetime
    message_id: str
    correlation_id: str
    readings: tuple[MeterReading, ...]
    properties: tuple[tuple[str, str], ...] = ()
    source: str = "gridbus"

    def __post_init__(self) -> None:
        if self.verb not in ("created", "changed"):
            raise ValueError(f"MeterReadings go out created or changed, not {self.verb!r}")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")

    def encode(self) -> bytes:
        head = [
            f"<?xml version='1.0' encoding='utf-8'?>\n<Message xmlns=\"{NAMESPACE}\"><Header>",
            f"<Verb>{self.verb}</Verb><Noun>MeterReadings</Noun><Revision>1.0</Revision>",
            f"<Timestamp>{self.timestamp.isoformat()}</Timestamp><Source>{escape_text(self.source)}</Source>",
            f"<MessageID>{escape_text(self.message_id)}</MessageID><CorrelationID>{escape_text(self.correlation_id)}</CorrelationID>",
            *(
                f"<Property><Name>{escape_text(n)}</Name><Value>{escape_text(v)}</Value></Property>"
                for n, v in self.properties
            ),
            f"</Header><Payload><MeterReadings xmlns=\"{METER_READINGS_NAMESPACE}\">",
        ]
        body = [_reading(r) for r in self.readings]
        return "".join((*head, *body, "</MeterReadings></Payload></Message>")).encode("utf-8")


def _reading(r: MeterReading) -> str:
    meter, point, time_stamp, collected, total, tariffs, multiplier, qualities = r
    if qualities:
        head = "<Readings>" + "".join(
            f"<ReadingQualities><ReadingQualityType ref=\"{q}\"/></ReadingQualities>" for q in qualities
        ) + "<ReadingType ref=\""
    else:
        head = "<Readings><ReadingType ref=\""
    tail = f"\"/><reportedDateTime>{collected}</reportedDateTime><timeStamp>{time_stamp}</timeStamp><value>"
    sharp, peak, flat, valley = tariffs
    return (
        f"<MeterReading><Meter><mRID>{escape_text(meter)}</mRID><multiplier>{multiplier!s}</multiplier></Meter>"
        f"{head}{_TYPE_0}{tail}{total!s}</value></Readings>{head}{_TYPE_1}{tail}{sharp!s}</value></Readings>"
        f"{head}{_TYPE_2}{tail}{peak!s}</value></Readings>{head}{_TYPE_3}{tail}{flat!s}</value></Readings>"
        f"{head}{_TYPE_4}{tail}{valley!s}</value></Readings>"
        f"<UsagePoint><mRID>{escape_text(point)}</mRID></UsagePoint></MeterReading>"
    )


_TYPE_0, _TYPE_1, _TYPE_2, _TYPE_3, _TYPE_4 = READING_TYPES
