"""What a decided readings part sends: marketing's MeterReadings, the trading center's chunks, the
reply to the collection system and the canonical event. Each re-derives its records from the
message by the indices in the decision (``mappings.readings.decision``)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Iterator

from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent
from gridbus.contracts.canonical.meter_readings import MeterReading, MeterReadingsMessage
from gridbus.contracts.canonical.reply import ObjectId, Reply, ReplyError
from gridbus.contracts.mdc import DailyFrozenPublished
from gridbus.contracts.tc.soap import ChunkReading, MeterReadingsChunk
from gridbus.mappings.events import _event, _Payload
from gridbus.mappings.readings.decision import CHINA
from gridbus.mappings.readings.rules import RULES

#: Readings per ReceiveMeterReadings call when the worker's options do not say
#: (``GRIDBUS_READINGS_TC_CHUNK_SIZE``).
DEFAULT_TC_CHUNK_SIZE = 500
TC_CHUNK_OPTION = "readings_tc_chunk_size"


def _qualities(decision, index: int) -> tuple[str, ...]:
    return tuple(RULES[code].quality for code in decision["flags"].get(str(index), ()) if RULES[code].quality)


@lru_cache(maxsize=64)
def _end_of(day: str) -> str:
    """The end of a China-local day (ISO date) as a reading's timeStamp: the records of a part share it."""
    return datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(0, 0), CHINA).isoformat()


def _to_marketing(part: DailyFrozenPublished, ctx: MappingContext, indices: list[int], verb: str) -> MeterReadingsMessage | None:
    if not indices:
        return None
    readings = part.readings
    decision = ctx.decision
    flagged = decision["flags"]
    return MeterReadingsMessage(
        verb=verb,
        timestamp=ctx.now,
        message_id=ctx.message_id,
        correlation_id=ctx.correlation_id,
        properties=(
            ("sourceSystem", ctx.source_system), ("sourceMessageID", ctx.source_message_id),
            ("batchID", part.batch_id), ("partNo", str(part.part_no)),
        ),
        readings=tuple(
            MeterReading(
                r.meter_asset_no, r.metering_point_id, _end_of(r.day), r.collected, r.total, r.tariffs, r.multiplier,
                _qualities(decision, r.index) if str(r.index) in flagged else (),
            )
            for r in (readings[i - 1] for i in indices)
        ),
    )


def marketing_readings(part: DailyFrozenPublished, ctx: MappingContext) -> MeterReadingsMessage | None:
    """Every accepted record that is not a correction, Verb created."""
    decision = ctx.decision
    left_out = {*decision["withheld"], *decision["repeats"], *decision["corrections"]}
    return _to_marketing(part, ctx, [r.index for r in part.readings if r.index not in left_out], "created")


def marketing_corrections(part: DailyFrozenPublished, ctx: MappingContext) -> MeterReadingsMessage | None:
    """The corrections (a newer CollectedAt for a date already sent), Verb changed."""
    return _to_marketing(part, ctx, ctx.decision["corrections"], "changed")


def tc_chunks(part: DailyFrozenPublished, ctx: MappingContext) -> Iterator[tuple[str, dict]]:
    """The market points' records in chunks: ``(chunk number, {"no", "count", "indices"})``."""
    size = int(ctx.options.get(TC_CHUNK_OPTION, DEFAULT_TC_CHUNK_SIZE))
    market = ctx.decision["market"]
    count = (len(market) + size - 1) // size
    for n in range(count):
        yield str(n + 1), {"no": n + 1, "count": count, "indices": market[n * size:(n + 1) * size]}


def tc_readings(part: DailyFrozenPublished, ctx: MappingContext) -> MeterReadingsChunk:
    chunk = ctx.item
    corrections = set(ctx.decision["corrections"])
    return MeterReadingsChunk(
        message_id=ctx.message_id,
        correlation_id=ctx.correlation_id,
        sent_at=ctx.now,
        batch_id=part.batch_id,
        part_no=part.part_no,
        data_date=part.data_date,
        chunk_no=chunk["no"],
        chunk_count=chunk["count"],
        readings=tuple(  # the record's values are the contract's, validated: no model validation per reading
            ChunkReading.model_construct(
                metering_point_id=r.metering_point_id,
                meter_asset_no=r.meter_asset_no,
                collected_at=r.collected_at,
                correction=r.index in corrections,
                total=r.total,
                tariffs=r.tariffs,
                multiplier=r.multiplier,
                qualities=_qualities(ctx.decision, r.index),
            )
            for r in (part.readings[i - 1] for i in chunk["indices"])
        ),
    )


def reply(part: DailyFrozenPublished, ctx: MappingContext) -> Reply:
    """The 61968-100 reply to the collection system: the part's result and one Error per problem."""
    decision = ctx.decision
    readings = part.readings
    details = f"route {ctx.route}, batch {part.batch_id} part {part.part_no} of {part.part_count}"
    return Reply(
        noun="MeterReadings",
        result=decision["result"],
        correlation_id=ctx.source_message_id,
        message_id=ctx.message_id,
        timestamp=ctx.now,
        errors=tuple(
            ReplyError(
                code=code,
                level=level,
                reason=reason,
                details=details,
                xpath=readings[index - 1].xpath,
                id=ObjectId(readings[index - 1].metering_point_id, "MeteringPointId", "mdc"),
            )
            for index, code, level, reason in decision["problems"]
        ),
    )


def part_event(part: DailyFrozenPublished, ctx: MappingContext) -> CanonicalEvent:
    """``MeterReadingBatch.created``: one part decided, with its counts (no record data)."""
    counts = ctx.decision["counts"]
    payload = _Payload("MeterReadingBatch")
    root = payload.root
    payload.add(root, "mRID", part.batch_id)
    payload.add(root, "partNo", part.part_no)
    payload.add(root, "partCount", part.part_count)
    payload.add(root, "dataDate", part.data_date.isoformat())
    payload.add(root, "orgNo", part.org_no)
    if part.org_name:
        payload.add(root, "orgName", part.org_name)
    payload.add(root, "result", ctx.decision["result"])
    for name in ("received", "accepted", "flagged", "withheld", "repeats", "corrections", "market"):
        payload.add(root, name, counts[name])
    return _event("created", payload, ctx)
