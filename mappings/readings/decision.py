"""The decision on one part of a readings batch: every record judged, on one read of the state.

The state read per part is three ``get_many`` (one round trip each, whatever the part's size):
the last accepted reading of each metering point (kind ``last-reading``, key = MeteringPointId,
data ``{"last": "...", "previous": "..." or null}``, each a reading as ``rules.Held`` writes it:
the previous one is the base of a correction), what the
master data holds of each point (``metering-point``), and since when each is in the retail
market (``market-point``); plus the records of the batch's other parts (``readings-part``, key =
BatchId/PartNo, ref = BatchId), which track the batch for ``gridbus trace``. Its writes are one ``last-reading`` put per point that
moved and the batch record, committed in one transaction with the fact that the part was decided.

The result is compact, records named by index (1-based) only, so the steps re-derive what they
send from the message itself:

    part, result (OK / PARTIAL / FAILED), counts (received, accepted, flagged, withheld, repeats,
    corrections, market), problems ([index, code, level, reason], record by record), withheld,
    repeats, corrections, market (indices), flags ({index: [WARNING codes]})
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from gridbus.contracts.canonical.reply import ReplyError, result_of
from gridbus.contracts.mdc import DailyFrozenPublished, FrozenReading
from gridbus.contracts.metering_point import MARKET_POINT, METERING_POINT, MarketPointData, MeteringPointData
from gridbus.contracts.state import Decision, State
from gridbus.mappings.readings import rules
from gridbus.mappings.readings.rules import FATAL, INFORM, WARNING, Finding, Held

LAST_READING = "last-reading"
PART = "readings-part"
CHINA = timezone(timedelta(hours=8))


class _History:
    """A metering point's last accepted reading and the one before, as the decision moves them.

    The stored readings are kept as read: the one before is turned into a ``Held`` only when a
    correction needs it, and a reading that only moves from last to previous is written back as
    the text it came as (ten thousand points a part: neither is free)."""

    __slots__ = ("last", "_last_data", "_previous", "_previous_data", "moved")

    def __init__(self, last: str | None = None, previous: str | None = None):
        self.last = Held.from_data(last) if last else None
        self._last_data, self._previous, self._previous_data = last, None, previous
        self.moved = False

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "_History":
        return cls(data["last"], data.get("previous"))

    @property
    def previous(self) -> Held | None:
        if self._previous is None and self._previous_data:
            self._previous = Held.from_data(self._previous_data)
        return self._previous

    def advance(self, reading: Held) -> None:
        """A reading for a later date: the last one becomes the previous."""
        self._previous, self._previous_data = self.last, self._last_data
        self.last, self._last_data = reading, None
        self.moved = True

    def correct(self, reading: Held) -> None:
        """A newer collection of the last date: it replaces the last, the previous stays."""
        self.last, self._last_data = reading, None
        self.moved = True

    def to_data(self) -> dict[str, Any]:
        last = self._last_data if self._last_data is not None else self.last.to_data()
        previous = self._previous_data if self._previous_data is not None or self._previous is None else self._previous.to_data()
        return {"last": last, "previous": previous}


@dataclass
class _Outcome:
    problems: list[list] = field(default_factory=list)
    withheld: list[int] = field(default_factory=list)
    repeats: list[int] = field(default_factory=list)
    corrections: list[int] = field(default_factory=list)
    market: list[int] = field(default_factory=list)
    flags: dict[str, list[str]] = field(default_factory=dict)


def judge(r: FrozenReading, part_date, history: _History, point: MeteringPointData | None) -> tuple[str, list[Finding]]:
    """Every rule on one record: ``(place, findings)``; the record is withheld when a finding is FATAL."""
    findings = [
        f for f in (
            rules.negative_values(r), rules.multiplier_valid(r), rules.data_date_matches(r, part_date), rules.tariff_sum(r)
        ) if f is not None
    ]
    where = rules.place(r, history.last)
    if where == rules.OLDER:
        findings.append(Finding(
            "older-than-accepted",
            f"record {r.index} ({r.metering_point_id}, {r.data_date.isoformat()}): the reading of "
            f"{history.last.data_date.isoformat()} is already accepted",
        ))
        return where, findings
    if where == rules.REPEAT:
        return where, [*findings, Finding("repeat", f"record {r.index} ({r.metering_point_id}, {r.data_date.isoformat()}): already accepted, collected {history.last.collected_at.isoformat()}")]
    base = history.previous if where == rules.CORRECTION else history.last
    if where == rules.CORRECTION:
        findings.append(Finding(
            "correction",
            f"record {r.index} ({r.metering_point_id}, {r.data_date.isoformat()}): collected "
            f"{r.collected_at.isoformat()}, supersedes the reading collected {history.last.collected_at.isoformat()}",
        ))
    mismatch = rules.multiplier_matches(r, rules.expected_multiplier(point, base, r))
    if mismatch is not None:
        findings.append(mismatch)
    if base is None:
        if where == rules.NEW:
            findings.append(Finding("first-reading", f"record {r.index} ({r.metering_point_id}, {r.data_date.isoformat()}): no earlier reading held"))
        return where, findings
    gap = rules.gap(r, base)
    if gap is not None:
        findings.append(gap)
    findings += rules.advance(r, base, rules.daily_cap_kwh(point))
    return where, findings


def decide(part: DailyFrozenPublished, state: State, now: datetime) -> Decision:
    decision = Decision()
    readings = part.readings
    points = list(dict.fromkeys(r.metering_point_id for r in readings))
    stored = state.get_data_many(LAST_READING, points, raw=True)
    # What the master data and the retail flows hold: read as it is now, not checked again at
    # commit (this decision writes neither kind, and their writers never read the readings).
    master = {key: MeteringPointData.from_data(rec.data) for key, rec in state.get_many(METERING_POINT, points, checked=False).items()}
    market = {key: MarketPointData.from_data(rec.data) for key, rec in state.get_many(MARKET_POINT, points, checked=False).items()}
    market_dates = {key: since.since.astimezone(CHINA).date().isoformat() for key, since in market.items()}
    day = part.data_date.isoformat()
    yesterday = (part.data_date - timedelta(days=1)).isoformat()
    histories: dict[str, _History] = {}
    moved: dict[str, str] = {}  # point -> its new data, as JSON text, for the points only the quick check saw
    out = _Outcome()
    for r in readings:
        key = r.metering_point_id
        history = histories.get(key)
        if history is None and key not in moved:
            text = stored.get(key)
            last = _last_of(text) if text is not None else None
            if last is not None and _good(r, last.split("|"), day, yesterday, master.get(key)):
                moved[key] = _encoded(r, last)
                since = market_dates.get(key)
                if since is not None and since <= day:
                    out.market.append(r.index)
                continue
        if history is None:  # the full rules: a record the quick check did not pass, or a point's second record
            history = histories[key] = _History.from_data(json.loads(stored[key])) if key in stored else _History()
            if key in moved:
                history.advance(Held.from_data(json.loads(moved.pop(key))["last"]))
        where, findings = judge(r, part.data_date, history, master.get(key))
        out.problems += [[r.index, f.code, f.level, f.reason] for f in findings]
        if any(f.level == FATAL for f in findings):
            out.withheld.append(r.index)
            continue
        if where == rules.REPEAT:
            out.repeats.append(r.index)
            continue
        warnings = [f.code for f in findings if f.level == WARNING]
        if warnings:
            out.flags[str(r.index)] = warnings
        if where == rules.CORRECTION:
            out.corrections.append(r.index)
            history.correct(Held.of(r))
        else:
            history.advance(Held.of(r))
        since = market_dates.get(key)
        if since is not None and since <= day:
            out.market.append(r.index)
    decision.put_encoded(LAST_READING, moved)
    for key, history in histories.items():
        if history.moved:
            decision.put(LAST_READING, key, history.to_data())
    decision.result = _result(part, out)
    _track_part(part, state, decision)
    return decision


def _last_of(text: str) -> str | None:
    """The last reading of a stored ``last-reading`` record's JSON text, read without ``json``
    where it is as ``_encoded`` and ``to_json`` write it (``{"last":"...",...}``: none of its
    values needs escaping, so the first quote after the key ends it)."""
    if text.startswith(_LAST_PREFIX):
        return text[len(_LAST_PREFIX):text.index('"', len(_LAST_PREFIX))]
    return json.loads(text).get("last")


_LAST_PREFIX = '{"last":"'


def _good(r: FrozenReading, last: list[str], day: str, yesterday: str, point: MeteringPointData | None) -> bool:
    """The quick check of nearly every record: True when ``judge`` would find nothing at all
    (tests/unit/test_readings_rules.py holds the two to the same answer). The record is for the
    part's date, the day after the last accepted reading of the same meter; no value is negative,
    the tariffs sum to the total, no register went down, the multiplier is the one held and the
    consumption is within the point's cap. Anything else goes through the full rules."""
    if r.day != day or last[0] != yesterday or last[2] != r.meter_asset_no:
        return False
    total, multiplier = r.total, r.multiplier
    sharp, peak, flat, valley = r.tariffs
    if multiplier <= 0 or abs(sharp + peak + flat + valley - total) > r.resolution * rules.TARIFF_REGISTERS:
        return False
    expected = point.multiplier if point is not None and point.multiplier is not None else Decimal(last[8])
    if multiplier != expected:
        return False
    then = Decimal(last[3])
    # Registers at or above the last reading's, which were never negative: none is negative now.
    if total < then or sharp < Decimal(last[4]) or peak < Decimal(last[5]) or flat < Decimal(last[6]) or valley < Decimal(last[7]):
        return False
    return (total - then) * multiplier <= rules.daily_cap_kwh(point)


def _encoded(r: FrozenReading, last: str) -> str:
    """A point's new ``last-reading`` data as the store writes it (``to_json``: compact, keys in
    order): the record as the last (as ``Held.to_data`` writes it), the one it follows, as it
    was stored, as the previous. Every value is an ISO date or time, a decimal or an identifier
    the schema limits to letters, digits and ``-_.``: none needs escaping in JSON."""
    sharp, peak, flat, valley = r.tariffs
    return (
        f'{{"last":"{r.day}|{r.collected}|{r.meter_asset_no}|{r.total!s}|{sharp!s}|{peak!s}|{flat!s}|{valley!s}|'
        f'{r.multiplier!s}","previous":"{last}"}}'
    )


def _result(part: DailyFrozenPublished, out: _Outcome) -> dict[str, Any]:
    received = len(part.readings)
    accepted = received - len(out.withheld) - len(out.repeats)
    return {
        "part": part.part,
        "result": result_of(tuple(_errors(out.problems)), received),
        "counts": {
            "received": received,
            "accepted": accepted,
            "flagged": len(out.flags),
            "withheld": len(out.withheld),
            "repeats": len(out.repeats),
            "corrections": len(out.corrections),
            "market": len(out.market),
        },
        "problems": out.problems,
        "withheld": out.withheld,
        "repeats": out.repeats,
        "corrections": out.corrections,
        "market": out.market,
        "flags": out.flags,
    }


def _errors(problems: list[list]):
    for index, code, level, reason in problems:
        yield ReplyError(code=code, level=level, reason=reason, xpath=f"/DailyFrozenPublished/Records/Record[{index}]")


def _track_part(part: DailyFrozenPublished, state: State, decision: Decision) -> None:
    """Record the part (``readings-part``, key ``BATCH/PARTNO``, ref the BatchId) and journal its
    counts with the parts of its batch still missing.

    A part never reads another part's record for a write, so the parts of one batch decided at
    the same moment by competing workers never refuse each other's commits; the others are read
    as they are now for the journal line only ("parts received 3 of 5")."""
    counts = decision.result["counts"]
    mine = {
        "part_no": part.part_no, "part_count": part.part_count, "data_date": part.data_date.isoformat(),
        "org_no": part.org_no, "counts": counts,
    }
    decision.put(PART, part.part, mine, ref=part.batch_id)
    decision.change(
        [part.batch_id],
        f"part {part.part_no} of {part.part_count} ({part.data_date.isoformat()}, org {part.org_no}): "
        f"{decision.result['result']}; received {counts['received']}, accepted {counts['accepted']} "
        f"(flagged {counts['flagged']}, corrections {counts['corrections']}), withheld {counts['withheld']}, "
        f"repeats {counts['repeats']}; to marketing {counts['accepted']}, to the trading center {counts['market']}; "
        + _parts_line(state, part.batch_id, mine),
    )


def _parts_line(state: State, batch_id: str, mine: dict | None = None) -> str:
    """``parts received 2 of 3, missing 3`` (or ``, complete``) from the batch's part records."""
    parts = [record.data for record in state.find(PART, ref=batch_id, checked=False)]
    if mine is not None:
        parts = [data for data in parts if data.get("part_no") != mine["part_no"]] + [mine]
    numbers = {int(data.get("part_no", 0)) for data in parts}
    part_count = max(int(data.get("part_count", 0)) for data in parts)
    missing = [n for n in range(1, part_count + 1) if n not in numbers]
    return f"parts received {len(numbers)} of {part_count}" + (f", missing {', '.join(map(str, missing))}" if missing else ", complete")


def batch_status(state: State, batch_id: str) -> str | None:
    """The batch's parts as the store holds them now (``gridbus trace BATCHID`` ends with it):
    each journal line says what its part saw when it was decided, and parts decided at the same
    moment by competing workers do not see each other. None when ``batch_id`` names no batch."""
    if not state.find(PART, ref=batch_id, checked=False):
        return None
    return f"batch {batch_id}: {_parts_line(state, batch_id)}"


def trace_keys(part: DailyFrozenPublished) -> tuple[str, ...]:
    return (part.batch_id,)


__all__ = ["INFORM", "LAST_READING", "PART", "batch_status", "decide", "judge", "trace_keys"]
