"""Readings parts for the flow 9 tests: the story of ``gridbus.tools.readings_batch`` (a decision run
on a real store as the runtime runs it, a part of 1,000 with one record of every problem kind) and
the route with fast retries."""

from __future__ import annotations

from dataclasses import replace

from gridbus.tools.readings_batch import (
    DAY, NOW, decide, market_point, metering_point, previous_day, problem_history, problem_records, seed,
    thousand_with_problems,
)

__all__ = [
    "DAY", "NOW", "ROUTES", "decide", "fast_route", "market_point", "metering_point", "previous_day",
    "problem_history", "problem_records", "seed", "thousand_with_problems",
]


def fast_route():
    """The readings route with retries in fractions of a second, for tests."""
    from gridbus.routes.meter_readings import DAILY_FROZEN_PUBLISHED
    from gridbus.routes.model import RetryPolicy

    return replace(DAILY_FROZEN_PUBLISHED, retry=RetryPolicy(attempts=6, first_delay_s=0.3, max_delay_s=1.0))


#: For ``gridbus worker --routes-module tests.support.readings:ROUTES`` in a process of its own.
ROUTES = (fast_route(),)
