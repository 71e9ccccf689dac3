"""Daily frozen meter readings (flow 9): meter data collection -> marketing and the trading center.

One message is one part of a batch (up to 10,000 records). The decision judges every record on
one read of the state (``mappings.readings.decision``); the steps then send the accepted records
to marketing (MeterReadings, created; corrections changed), the market points' records to the
trading center in chunks (each chunk a fan-out item with its own stable id), the reply to the
collection system, and a canonical event. Every part is journalled under its BatchId.
"""

from __future__ import annotations

from gridbus.contracts.mdc import DailyFrozenPublished
from gridbus.contracts.mdc.daily_frozen import MAX_BYTES
from gridbus.mappings.readings import decision, outputs
from gridbus.routes.model import RetryPolicy, Route, Source, Step, Target

DAILY_FROZEN_PUBLISHED = Route(
    name="mdc.daily-frozen-published",
    source=Source(system="mdc", routing_key="daily-frozen.published"),
    contract=DailyFrozenPublished,
    decide=decision.decide,
    steps=(
        Step("mkt-readings", outputs.marketing_readings, Target("mkt", "meter-readings.created")),
        Step("mkt-corrections", outputs.marketing_corrections, Target("mkt", "meter-readings.changed")),
        Step("tc-readings", outputs.tc_readings, Target("tc", "ReceiveMeterReadings"), each=outputs.tc_chunks),
        Step("mdc-reply", outputs.reply, Target("mdc", "daily-frozen.reply")),
        Step("event", outputs.part_event, Target("events")),
    ),
    # Settlement waits on these: the same patience as the trading center's other flows.
    retry=RetryPolicy(attempts=8, first_delay_s=5, max_delay_s=600),
    trace_keys=decision.trace_keys,
    max_body_bytes=MAX_BYTES,
    oversize_advice=f"split the batch into parts of at most 10,000 records ({MAX_BYTES} bytes) with PartNo/PartCount",
)

ROUTES = (DAILY_FROZEN_PUBLISHED,)
