"""Quality rules for daily frozen readings: pure functions of one record and what gridbus holds.

Each breach is a ``Finding`` with a stable ``code`` and a ``level`` (see ``RULES``):

- FATAL: the record is withheld (not forwarded, the last reading does not move) and reported;
- WARNING: the record is forwarded with an IEC 61968-9 ``ReadingQuality`` and reported;
- INFORM: reported only (a repeat is not forwarded again; a correction goes out as ``changed``).

A record is judged against the *base*: the last accepted reading of its metering point for an
earlier date, so a correction (same date, newer ``CollectedAt``) is judged against the reading
before the one it corrects. Registers are cumulative: they never go backwards, except where the
meter was exchanged (another ``MeterAssetNo``) or a register rolled over its maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from gridbus.contracts.mdc import FrozenReading
from gridbus.contracts.metering_point import MeteringPointData

FATAL, WARNING, INFORM = "FATAL", "WARNING", "INFORM"

#: Hours in a day: the contracted capacity (kVA) times 24 h bounds a day's energy (kWh).
HOURS_PER_DAY = Decimal(24)
#: The daily cap of a metering point whose master data gives no contracted capacity, in kWh
#: (primary side): 100 MVA for a whole day, above any single customer point in a province.
DEFAULT_DAILY_CAP_KWH = Decimal(100_000) * HOURS_PER_DAY
#: A register rolled over when the last reading was in the top tenth of its range and the step
#: across the maximum is within a tenth of the range (see ``rolled_over``).
ROLLOVER_SHARE = Decimal("0.1")
#: Tariff registers may differ from the total by one resolution step each.
TARIFF_REGISTERS = 4


@dataclass(frozen=True)
class Rule:
    level: str
    quality: str | None  # IEC 61968-9 ReadingQualityType code on a forwarded record
    what: str  # what happens, for the README's table


#: Every code a record can be reported with. ReadingQuality codes are ``<system>.<category>.<index>``
#: of IEC 61968-9: system 2 (the metering system), category 4 (data collection), 5 (reasonability)
#: or 6 (validation); the indices are gridbus's own.
RULES: dict[str, Rule] = {
    "negative-value": Rule(FATAL, None, "a register or the resolution is negative: withheld"),
    "multiplier-invalid": Rule(FATAL, None, "the multiplier is zero or negative: withheld"),
    "date-mismatch": Rule(FATAL, None, "the record's DataDate is not the part's: withheld"),
    "tariff-sum-mismatch": Rule(FATAL, None, "PAP_R1..PAP_R4 differ from PAP_R by more than one resolution step each: withheld"),
    "multiplier-mismatch": Rule(FATAL, None, "the multiplier is not the one held for the metering point: withheld"),
    "register-backwards": Rule(FATAL, None, "a register is lower than in the last accepted reading (same meter, no rollover): withheld"),
    "consumption-implausible": Rule(FATAL, None, "(today - last) x multiplier is over the point's daily cap x days: withheld"),
    "older-than-accepted": Rule(FATAL, None, "a reading for an earlier date than the last accepted one: withheld"),
    "first-reading": Rule(WARNING, "2.6.1", "no reading held for the metering point: accepted as its first, flagged"),
    "gap": Rule(WARNING, "2.4.1", "the last accepted reading is more than one day old: accepted, flagged with the days it spans"),
    "meter-exchange": Rule(WARNING, "2.6.2", "another MeterAssetNo than the last reading's: accepted without the backwards check, flagged"),
    "register-rollover": Rule(WARNING, "2.5.1", "a register passed its maximum and started again: accepted, flagged"),
    "repeat": Rule(INFORM, None, "the same (metering point, date) again, not newer: not forwarded again"),
    "correction": Rule(INFORM, None, "the same (metering point, date) with a newer CollectedAt: supersedes, sent as a correction"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    reason: str

    @property
    def level(self) -> str:
        return RULES[self.code].level


@dataclass(frozen=True, slots=True)
class Held:
    """The last accepted reading of a metering point, as the state keeps it (kind ``last-reading``)."""

    data_date: date
    collected_at: datetime
    meter: str
    total: Decimal
    tariffs: tuple[Decimal, ...]
    multiplier: Decimal

    @classmethod
    def of(cls, r: FrozenReading) -> "Held":
        return cls(r.data_date, r.collected_at, r.meter_asset_no, r.total, r.tariffs, r.multiplier)

    def to_data(self) -> str:
        """Compact, as ten thousand of them are read and written per part: ``date|collected
        at|meter|total|sharp|peak|flat|valley|multiplier``, decimals as text (none of the values
        can hold a ``|``: ISO dates and times, decimals, identifiers of letters, digits and ``-_.``)."""
        return "|".join((
            self.data_date.isoformat(), self.collected_at.isoformat(), self.meter, str(self.total),
            *map(str, self.tariffs), str(self.multiplier),
        ))

    @classmethod
    def from_data(cls, data: str) -> "Held":
        day, collected, meter, total, r1, r2, r3, r4, multiplier = data.split("|")
        return cls(
            date.fromisoformat(day), datetime.fromisoformat(collected), meter, Decimal(total),
            (Decimal(r1), Decimal(r2), Decimal(r3), Decimal(r4)), Decimal(multiplier),
        )


# -- checks of the record alone ----------------------------------------------------------------


def negative_values(r: FrozenReading) -> Finding | None:
    if r.total >= 0 and min(r.tariffs) >= 0:  # nearly every record: no names built
        return None
    named = (("PAP_R", r.total), *((f"PAP_R{i}", t) for i, t in enumerate(r.tariffs, start=1)))
    negative = [name for name, value in named if value < 0]
    if not negative:
        return None
    return Finding("negative-value", f"{_name(r)}: negative register {', '.join(negative)}")


def multiplier_valid(r: FrozenReading) -> Finding | None:
    if r.multiplier > 0:
        return None
    return Finding("multiplier-invalid", f"{_name(r)}: multiplier {r.multiplier} is not positive")


def data_date_matches(r: FrozenReading, part_date: date) -> Finding | None:
    if r.data_date == part_date:
        return None
    return Finding("date-mismatch", f"{_name(r)}: DataDate is not the part's {part_date.isoformat()}")


def tariff_sum(r: FrozenReading) -> Finding | None:
    """The four tariff registers sum to the total within one resolution step per register."""
    total = sum(r.tariffs, Decimal(0))
    allowed = r.resolution * TARIFF_REGISTERS
    if abs(total - r.total) <= allowed:
        return None
    return Finding(
        "tariff-sum-mismatch",
        f"{_name(r)}: PAP_R1..PAP_R4 sum to {total}, PAP_R is {r.total} (allowed difference {allowed})",
    )


# -- checks against what gridbus holds ----------------------------------------------------------


def expected_multiplier(point: MeteringPointData | None, base: Held | None, r: FrozenReading) -> tuple[Decimal, str] | None:
    """The multiplier gridbus holds: the master data's (flow 10) when it has one, else the last
    accepted reading's of the same meter; None when neither says."""
    if point is not None and point.multiplier is not None:
        return point.multiplier, "the master data"
    if base is not None and base.meter == r.meter_asset_no:
        return base.multiplier, f"the reading of {base.data_date.isoformat()}"
    return None


def multiplier_matches(r: FrozenReading, expected: tuple[Decimal, str] | None) -> Finding | None:
    if expected is None or r.multiplier == expected[0]:
        return None
    return Finding("multiplier-mismatch", f"{_name(r)}: multiplier {r.multiplier}, {expected[1]} holds {expected[0]}")


def daily_cap_kwh(point: MeteringPointData | None) -> Decimal:
    """The most energy a point may take in a day (primary side): contracted capacity x 24 h."""
    if point is not None and point.contracted_capacity_kva is not None and point.contracted_capacity_kva > 0:
        return point.contracted_capacity_kva * HOURS_PER_DAY
    return DEFAULT_DAILY_CAP_KWH


def gap(r: FrozenReading, base: Held) -> Finding | None:
    days = (r.data_date - base.data_date).days
    if days <= 1:
        return None
    return Finding("gap", f"{_name(r)}: last accepted reading is of {base.data_date.isoformat()}, the record spans {days} days")


def register_range(total: Decimal) -> Decimal:
    """The registers' range as the last total shows it: the next power of ten above it (a meter
    whose total read 99,990 counts to 99,999.99 and starts again at 0)."""
    return Decimal(10) ** len(str(int(max(total, Decimal(1)))))


def rolled_over(last: Decimal, current: Decimal, modulus: Decimal) -> bool:
    """``last`` -> ``current`` went past the register's maximum: the last reading was in the top
    tenth of the range and the step across the maximum is within a tenth of it."""
    return last >= modulus * (1 - ROLLOVER_SHARE) and 0 <= current + modulus - last <= modulus * ROLLOVER_SHARE


#: The registers' names in a record's order: the total, then the four tariffs.
_REGISTERS = ("PAP_R", "PAP_R1", "PAP_R2", "PAP_R3", "PAP_R4")


def advance(r: FrozenReading, base: Held, cap_kwh: Decimal) -> list[Finding]:
    """Registers against the base reading of the same meter: none backwards (unless rolled over),
    and the consumption plausible; a meter exchange starts afresh."""
    if r.meter_asset_no != base.meter:
        return [Finding("meter-exchange", f"{_name(r)}: meter {r.meter_asset_no} replaces {base.meter}")]
    findings = []
    backwards, rolled = [], []
    consumed = r.total - base.total
    lower = [(name, now, then) for name, now, then in zip(_REGISTERS, (r.total, *r.tariffs), (base.total, *base.tariffs))
             if now < then]
    modulus = register_range(base.total) if lower else None
    for name, now, then in lower:
        if not rolled_over(then, now, modulus):
            backwards.append(f"{name} {now} < {then}")
        else:
            rolled.append(name)
            if name == "PAP_R":
                consumed = now + modulus - then
    if backwards:
        findings.append(
            Finding("register-backwards", f"{_name(r)}: registers below the reading of {base.data_date.isoformat()}: {'; '.join(backwards)}")
        )
        return findings
    if rolled:
        findings.append(Finding("register-rollover", f"{_name(r)}: {', '.join(rolled)} rolled over"))
    days = max((r.data_date - base.data_date).days, 1)
    energy = consumed * r.multiplier
    if energy > cap_kwh * days:
        findings.append(
            Finding(
                "consumption-implausible",
                f"{_name(r)}: {energy} kWh in {days} day(s) since {base.data_date.isoformat()}, over the cap of {cap_kwh * days} kWh",
            )
        )
    return findings


# -- the record's place in its metering point's history --------------------------------------------

NEW, REPEAT, CORRECTION, OLDER = "new", "repeat", "correction", "older"


def place(r: FrozenReading, last: Held | None) -> str:
    """Where the record stands against the last accepted reading of its point."""
    if last is None or r.data_date > last.data_date:
        return NEW
    if r.data_date < last.data_date:
        return OLDER
    return CORRECTION if r.collected_at > last.collected_at else REPEAT


def _name(r: FrozenReading) -> str:
    return f"record {r.index} ({r.metering_point_id}, {r.data_date.isoformat()})"
