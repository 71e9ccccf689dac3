"""The decision on one part of a readings batch: every record judged, on one read of the state.

The state read per part is three ``get_many`` (one round trip each, whatever the part's size):
the last accepted reading of each metering point (kind ``last-reading``, key = MeteringPointId,
data ``{"last": [...], "previous": [...] or null}``, see ``rules.Held``: the previous one is the
base of a correction), what the
master data holds of each point (``metering-point``), and since when each is in the retail
market (``market-point``); plus the batch's own record (``readings-batch``, key = BatchId), which
tracks its parts for ``gridbus trace``. Its writes are one ``last-reading`` put per point that
moved and the batch record, committed in one transaction with the fact that the part was decided.

The result is compact, records named by index (1-based) only, so the steps re-derive what they
send from the message itself:

    part, result (OK / PARTIAL / FAILED), counts (received, accepted, flagged, withheld, repeats,
    corrections, market), problems ([index, code, level, reason], record by record), withheld,
    repeats, corrections, market (indices), flags ({index: [WARNING codes]})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from gridbus.contracts.canonical.reply import ReplyError, result_of
from gridbus.contracts.mdc import DailyFrozenPublished, FrozenReading
from gridbus.contracts.metering_point import MARKET_POINT, METERING_POINT, MarketPointData, MeteringPointData
from gridbus.contracts.state import Decision, State
from gridbus.mappings.readings import rules
from gridbus.mappings.readings.rules import FATAL, INFORM, WARNING, Finding, Held

LAST_READING = "last-reading"
BATCH = "readings-batch"
CHINA = timezone(timedelta(hours=8))


@dataclass
class _History:
    """A metering point's last accepted reading and the one before, as the decision moves them."""

    last: Held | None = None
    previous: Held | None = None
    moved: bool = False

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "_History":
        previous = data.get("previous")
        return cls(Held.from_data(data["last"]), Held.from_data(previous) if previous else None)

    def to_data(self) -> dict[str, Any]:
        return {"last": self.last.to_data(), "previous": self.previous.to_data() if self.previous else None}


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
    points = list(dict.fromkeys(r.metering_point_id for r in part.readings))
    histories = {key: _History.from_data(rec.data) for key, rec in state.get_many(LAST_READING, points).items()}
    master = {key: MeteringPointData.from_data(rec.data) for key, rec in state.get_many(METERING_POINT, points).items()}
    market = {key: MarketPointData.from_data(rec.data) for key, rec in state.get_many(MARKET_POINT, points).items()}
    out = _Outcome()
    for r in part.readings:
        history = histories.setdefault(r.metering_point_id, _History())
        where, findings = judge(r, part.data_date, history, master.get(r.metering_point_id))
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
            history.last = Held.of(r)
        else:
            history.previous, history.last = history.last, Held.of(r)
        history.moved = True
        since = market.get(r.metering_point_id)
        if since is not None and since.since.astimezone(CHINA).date() <= part.data_date:
            out.market.append(r.index)
    for key, history in histories.items():
        if history.moved:
            decision.put(LAST_READING, key, history.to_data())
    decision.result = _result(part, out)
    _track_part(part, state, decision)
    return decision


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
    """Record the part in its batch and journal its counts with the parts still missing."""
    record = state.get(BATCH, part.batch_id)
    data = dict(record.data) if record else {"part_count": part.part_count, "data_date": part.data_date.isoformat(), "org_no": part.org_no, "parts": {}}
    parts = dict(data["parts"])
    counts = decision.result["counts"]
    parts[str(part.part_no)] = counts
    data["parts"] = parts
    data["part_count"] = max(int(data["part_count"]), part.part_count)
    decision.put(BATCH, part.batch_id, data)
    missing = [n for n in range(1, int(data["part_count"]) + 1) if str(n) not in parts]
    decision.change(
        [part.batch_id],
        f"part {part.part_no} of {part.part_count} ({part.data_date.isoformat()}, org {part.org_no}): "
        f"{decision.result['result']}; received {counts['received']}, accepted {counts['accepted']} "
        f"(flagged {counts['flagged']}, corrections {counts['corrections']}), withheld {counts['withheld']}, "
        f"repeats {counts['repeats']}; to marketing {counts['accepted']}, to the trading center {counts['market']}; "
        f"parts received {len(parts)} of {data['part_count']}"
        + (f", missing {', '.join(map(str, missing))}" if missing else ", complete"),
    )


def trace_keys(part: DailyFrozenPublished) -> tuple[str, ...]:
    return (part.batch_id,)


__all__ = ["BATCH", "INFORM", "LAST_READING", "decide", "judge", "trace_keys"]
