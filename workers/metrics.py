"""The worker's metrics, tallied once per settled batch and exposed by prometheus-client.

A ``Meter`` is a part (``workers.parts``) of one worker (one lane): after each settled batch it
adds the batch's outcomes, processing durations, retries and dead letters to plain counters
under one lock taken once per batch, and ``Settlement`` hands it the batch's confirm wait and
store commit time. Nothing of prometheus-client runs per message: ``WorkerCollector`` turns
the tallies into metric families when ``/metrics`` is scraped (``workers.probes``).
``ArchiveCollector`` reads the dead-letter archive's size and oldest letter from the store at
scrape time, at most every 15 s.

Names follow Prometheus's conventions (base units, ``_total`` counters) and OpenTelemetry's
messaging conventions where they have one: ``messaging.process.duration`` is exposed as
``messaging_process_duration_seconds``. Labels are routes, outcomes, error types and lanes,
never message ids or business keys: a route's series stay a handful, whatever the traffic.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from typing import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from gridbus.workers.logging import get_logger
from gridbus.workers.parts import Part
from gridbus.workers.pipeline import Delivery

log = get_logger("gridbus.metrics")

#: Upper bounds of the processing-duration buckets, in seconds: OpenTelemetry's advice for
#: ``messaging.process.duration``.
DURATION_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Upper bounds of the confirm-wait and store-commit buckets, in seconds.
WAIT_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Upper bounds of the batch-size buckets, in messages.
BATCH_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
#: Every outcome a settled message can have (``Delivery.outcome``).
OUTCOMES = ("delivered", "duplicate", "superseded", "retry-scheduled", "dead-lettered", "requeued")


class Buckets:
    """One histogram's counts per bucket (not cumulative) and sum; the last count is +Inf's."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family_samples(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs as ``HistogramMetricFamily.add_metric`` takes them, and the sum."""
        running, samples = 0, []
        for bound, count in zip((*(_le(b) for b in self.bounds), "+Inf"), self.counts):
            running += count
            samples.append((bound, running))
        return samples, self.total


def _le(bound: float) -> str:
    return repr(float(bound))


class Meter(Part):
    """What one worker settled, for ``WorkerCollector``: ``lane`` names it in the batch-level series.

    Every (route, outcome) series exists from the start, at 0: Prometheus's ``increase()`` sees
    the first dead letter of a route only if the series was there before it."""

    def __init__(self, lane: str, routes: Iterable[str]):
        self.lane = lane
        self._lock = threading.Lock()
        routes = tuple(routes)
        # (route, outcome) -> messages
        self.messages: dict[tuple[str, str], int] = {(r, o): 0 for r in routes for o in OUTCOMES}
        self.durations: dict[str, Buckets] = {r: Buckets(DURATION_BOUNDS) for r in routes}
        self.dead_letters: dict[tuple[str, str], int] = {}  # (route, error type) -> dead letters
        self.batches = Buckets(BATCH_BOUNDS)
        self.confirm_waits = Buckets(WAIT_BOUNDS)
        self.commits = Buckets(WAIT_BOUNDS)
        self.schedules_due: dict[str, int] = {}  # internal route -> schedules due at the last poll

    def after_settle(self, batch: list[Delivery]) -> None:
        now = time.monotonic()
        with self._lock:
            messages, durations, dead = self.messages, self.durations, self.dead_letters
            for d in batch:
                route, outcome = d.route.name, d.outcome
                key = (route, outcome)
                messages[key] = messages.get(key, 0) + 1
                buckets = durations.get(route)
                if buckets is None:
                    buckets = durations[route] = Buckets(DURATION_BOUNDS)
                buckets.add(now - d.started)
                if outcome == "dead-lettered":
                    kind = (route, d.error.kind if d.error is not None else "unknown")
                    dead[kind] = dead.get(kind, 0) + 1
            self.batches.add(len(batch))

    def confirm_waited(self, seconds: float) -> None:
        """A batch's publisher confirms took ``seconds`` to come (work-ahead decoding meanwhile included)."""
        with self._lock:
            self.confirm_waits.add(seconds)

    def committed(self, seconds: float) -> None:
        """A batch's effects and outcomes took ``seconds`` to commit in the store."""
        with self._lock:
            self.commits.add(seconds)

    def due(self, counts: dict[str, int]) -> None:
        """Schedules found due at a poll, by internal route (every route polled, 0 included)."""
        with self._lock:
            self.schedules_due.update(counts)

    def snapshot(self) -> dict:
        """A consistent copy of every tally, for one scrape."""
        with self._lock:
            return {
                "messages": dict(self.messages),
                "durations": {route: _copy(b) for route, b in self.durations.items()},
                "dead_letters": dict(self.dead_letters),
                "batches": _copy(self.batches),
                "confirm_waits": _copy(self.confirm_waits),
                "commits": _copy(self.commits),
                "schedules_due": dict(self.schedules_due),
            }


def _copy(buckets: Buckets) -> Buckets:
    copy = Buckets(buckets.bounds)
    copy.counts, copy.total = list(buckets.counts), buckets.total
    return copy


class WorkerCollector(Collector):
    """The metric families of a process's meters (one per lane), read at each scrape, and the
    readiness of each lane when ``readiness`` is given (a callable: lane -> (ready, consuming routes))."""

    def __init__(self, meters: Iterable[Meter], readiness=None):
        self.meters = list(meters)
        self.readiness = readiness

    def collect(self) -> Iterator:
        snapshots = [(m.lane, m.snapshot()) for m in self.meters]
        messages = CounterMetricFamily(
            "gridbus_messages", "Messages settled, by route and outcome.", labels=("route", "outcome")
        )
        dead = CounterMetricFamily(
            "gridbus_dead_letters", "Messages dead-lettered, by route and error type.", labels=("route", "error_type")
        )
        retries = CounterMetricFamily(
            "gridbus_retries_scheduled", "Retry copies sent to a delay queue, by route.", labels=("route",)
        )
        duration = HistogramMetricFamily(
            "messaging_process_duration", "Time from taking a message to settling it, in seconds "
            "(OpenTelemetry messaging.process.duration).", labels=("route",), unit="seconds",
        )
        batches = HistogramMetricFamily("gridbus_batch_size", "Messages per settled batch.", labels=("lane",))
        confirms = HistogramMetricFamily(
            "gridbus_confirm_wait", "Wait for a batch's publisher confirms, in seconds.", labels=("lane",),
            unit="seconds",
        )
        commits = HistogramMetricFamily(
            "gridbus_store_commit", "Commit of a batch's effects and outcomes, in seconds.", labels=("lane",),
            unit="seconds",
        )
        due = GaugeMetricFamily(
            "gridbus_schedules_due", "Schedules due at the last poll, by internal route.", labels=("route",)
        )
        for lane, snap in snapshots:
            for (route, outcome), n in sorted(snap["messages"].items()):
                messages.add_metric((route, outcome), n)
                if outcome == "retry-scheduled":
                    retries.add_metric((route,), n)
            for (route, kind), n in sorted(snap["dead_letters"].items()):
                dead.add_metric((route, kind), n)
            for route, buckets in sorted(snap["durations"].items()):
                duration.add_metric((route,), *buckets.family_samples())
            batches.add_metric((lane,), *snap["batches"].family_samples())
            confirms.add_metric((lane,), *snap["confirm_waits"].family_samples())
            commits.add_metric((lane,), *snap["commits"].family_samples())
            for route, n in sorted(snap["schedules_due"].items()):
                due.add_metric((route,), n)
        yield from (messages, dead, retries, duration, batches, confirms, commits, due)
        if self.readiness is not None:
            yield from self._readiness()

    def _readiness(self) -> Iterator:
        ready = GaugeMetricFamily(
            "gridbus_ready", "1 when the lane passes every readiness check (/readyz).", labels=("lane",)
        )
        consuming = GaugeMetricFamily(
            "gridbus_consuming", "1 while this process consumes the route's work queue.", labels=("route",)
        )
        for lane, (ok, routes) in self.readiness().items():
            ready.add_metric((lane,), 1.0 if ok else 0.0)
            for route, on in sorted(routes.items()):
                consuming.add_metric((route,), 1.0 if on else 0.0)
        yield ready
        yield consuming


class ArchiveCollector(Collector):
    """The dead-letter archive's unhandled letters and the oldest of them, by route, read from
    the store (one indexed query, ``DeadLetters.groups``) at most every ``cache_s`` seconds:
    every worker on a shared store exports the same values, so rules take ``max by (route)``."""

    def __init__(self, dead_letters, cache_s: float = 15.0):
        self.dead_letters, self.cache_s = dead_letters, cache_s
        self._lock = threading.Lock()
        self._read_at = -cache_s
        self._by_route: dict[str, tuple[int, float]] = {}  # route -> (unhandled letters, oldest dead-lettered at)

    def collect(self) -> Iterator:
        by_route = self._read()
        size = GaugeMetricFamily(
            "gridbus_archive_dead_letters", "Unhandled letters in the dead-letter archive, by route.", labels=("route",)
        )
        oldest = GaugeMetricFamily(
            "gridbus_archive_oldest_unhandled_timestamp_seconds",
            "When the oldest unhandled letter of the route was dead-lettered, in seconds since the epoch.",
            labels=("route",),
        )
        for route, (count, first) in sorted(by_route.items()):
            size.add_metric((route,), count)
            oldest.add_metric((route,), first)
        yield size
        yield oldest

    def _read(self) -> dict[str, tuple[int, float]]:
        with self._lock:
            if time.monotonic() - self._read_at < self.cache_s:
                return self._by_route
            self._read_at = time.monotonic()
            try:
                groups = self.dead_letters.groups()
            except Exception as exc:  # noqa: BLE001 - the store's trouble shows in /readyz; the scrape goes on
                log.warning("metrics.archive_unread", error=f"{type(exc).__name__}: {exc}")
                return self._by_route  # the last values read
            by_route: dict[str, tuple[int, float]] = {}
            for group in groups:
                count, first = by_route.get(group.route, (0, group.first_seen))
                by_route[group.route] = (count + group.count, min(first, group.first_seen))
            self._by_route = by_route
            return by_route


def registry_of(meters: Iterable[Meter], readiness=None, dead_letters=None) -> CollectorRegistry:
    """A registry of the process's own (not prometheus-client's global one) with the meters'
    families, and the archive's when ``dead_letters`` (the store's ``DeadLetters``) is given."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(meters, readiness))
    if dead_letters is not None:
        registry.register(ArchiveCollector(dead_letters))
    return registry

