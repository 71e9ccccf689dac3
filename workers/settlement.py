"""Processing a batch and settling each of its messages exactly once.

A message is acked only after its fate is confirmed by the broker or the target: delivered
(every step's effect confirmed and recorded), a duplicate or superseded (recorded), or its retry
or dead-letter copy (``workers.fate``) confirmed by the broker. Anything else (a crash, a lost
connection) leaves it unacked, and the broker delivers it again; the store makes the repeat
harmless.

Each step runs across the whole batch (``Pipeline.start_all``), its outputs are confirmed in one
round trip, its effects recorded in one commit, and its messages acked. The round trip is not
idle: ``meanwhile`` (the intake's work-ahead) reads and decodes what arrived. A decoder that
kills the process there takes the unrecorded batch in hand with it, which is then published again
under the same output ids, as after a kill at any moment before its commit.

Redelivered messages are processed alone, each processing start counted in the store, so a
message that crashes or hangs the worker is dead-lettered as poison after ``Route.max_crashes``
starts without touching its neighbours.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Callable

from gridbus.contracts.errors import TransientDeliveryError
from gridbus.workers import fate
from gridbus.workers.amqp import ConfirmTimeout, Publisher
from gridbus.workers.metrics import Meter
from gridbus.workers.parts import Part
from gridbus.workers.pipeline import Delivery, Pipeline
from gridbus.workers.store import Store


class Settlement:
    """publisher: the current connection's publisher (it changes on reconnect). meanwhile: work
    for the confirm round trip. parts: told of every settled batch (``Part.after_settle``).
    meter: told each batch's confirm wait and commit time (None: metrics off)."""

    #: Causes of in-hand failures kept for the poison guard's dead letters, at most.
    FAILED_IN_HAND_MAX = 10_000

    def __init__(
        self, store: Store, pipeline: Pipeline, publisher: Callable[[], Publisher], clock: Callable[[], datetime],
        *, meanwhile: Callable[[], None], parts: list[Part], meter: Meter | None = None,
    ):
        self.store, self.pipeline, self.publisher, self.clock = store, pipeline, publisher, clock
        self.meanwhile, self.parts, self.meter = meanwhile, parts, meter
        #: acks as one multiple-ack (RabbitMQ: batches run in order on one channel)
        self.multiple_ack = False
        #: when the batch in hand started or last made progress (None: no batch), for the watchdog
        self.busy_since: float | None = None
        self._failed_in_hand: dict[tuple[str, str], str] = {}  # (route, message id) -> what failed meanwhile

    def run(self, batch: list[Delivery]) -> None:
        """Process ``batch``: runs of first deliveries together, each redelivered message alone."""
        plain: list[Delivery] = []
        for d in batch:
            if d.redelivered:
                if plain:
                    self.process(plain)
                    plain = []
                self.process([d], suspect=True)
            else:
                plain.append(d)
        if plain:
            self.process(plain)

    def process(self, batch: list[Delivery], suspect: bool = False) -> None:
        self.busy_since = time.monotonic()
        try:
            self._process_in_hand(batch, suspect)
        except Exception as exc:
            # The connection (or the store) failed with this batch in hand: the messages come
            # back redelivered. Should one of them be the cause, and turn poison, its dead letter
            # says what happened while it was in hand.
            cause = f"{type(exc).__name__}: {exc}"
            for d in batch:
                if d.message_id:
                    self._failed_in_hand[(d.route.name, d.message_id)] = cause
            if len(self._failed_in_hand) > self.FAILED_IN_HAND_MAX:
                self._failed_in_hand.clear()
            raise
        finally:
            self.busy_since = None

    def _process_in_hand(self, batch: list[Delivery], suspect: bool) -> None:
        seen: set[tuple[str, str]] = set()
        known = {} if suspect else self.store.idempotency.lookup((d.route.name, d.message_id) for d in batch if d.message_id)
        if not suspect:  # a suspect is decoded only after its start was counted (see _is_poison)
            self.pipeline.decode_ahead(batch, known)
        to_start = []
        for d in batch:
            key = (d.route.name, d.message_id or "")
            if d.message_id and key in seen:
                d.outcome = "duplicate"  # the same message twice in one batch: one copy is enough
                continue
            seen.add(key)
            if suspect and d.message_id and self._is_poison(d):
                continue  # a finished message is a duplicate, never poison: see _is_poison
            to_start.append((d, known.get(key)))
        self.pipeline.start_all(to_start)
        self._settle_outputs(batch)
        now, epoch_s = self.clock(), time.time()
        for d in batch:
            if d.error is not None:
                self._send_copy(d, fate.fate_of(d, d.error, d.route, now, epoch_s))
        settled = self.publisher().wait() if any(d.settle_ticket for d in batch) else {}
        self._settle_messages(batch, settled)
        if suspect:
            for d in batch:
                if d.message_id and d.outcome != "requeued":
                    self.store.idempotency.end_attempt(d.route.name, d.message_id)
                    self._failed_in_hand.pop((d.route.name, d.message_id), None)

    def _is_poison(self, d: Delivery) -> bool:
        """Count this start of a redelivered message; poison once it started too often without outcome."""
        if self.store.idempotency.outcome(d.route.name, d.message_id) is not None:
            return False
        starts = self.store.idempotency.begin_attempt(d.route.name, d.message_id)
        error = fate.poison(starts, d.route, self._failed_in_hand.get((d.route.name, d.message_id)))
        if error is None:
            return False
        self._failed_in_hand.pop((d.route.name, d.message_id), None)
        d.error = error
        return True

    def _settle_outputs(self, batch: list[Delivery]) -> None:
        meter, started = self.meter, time.perf_counter()
        results = {}
        if any(d.tickets for d in batch):
            results = self.publisher().wait(meanwhile=self.meanwhile)
            if meter is not None:
                meter.confirm_waited(time.perf_counter() - started)
        effects, outcomes = [], []
        for d in batch:
            confirmed = []
            for ticket, step in d.tickets.items():
                error = results.get(ticket, ConfirmTimeout("publish outcome unknown"))
                if error is None:
                    confirmed.append((d.route.name, d.message_id, step))
                    d.delivered.append(step)
                elif d.error is None:
                    d.error = TransientDeliveryError(f"step {step}: {error.reason if hasattr(error, 'reason') else error}")
            if d.error is None and d.outcome in ("delivered", "superseded"):
                # Finished in this commit: the outcome says every step took effect.
                outcomes.append((d.route.name, d.message_id, d.outcome))
            else:
                effects += confirmed  # partial progress: a retry repeats only the rest
        started = time.perf_counter()
        self.store.idempotency.record(effects=effects, outcomes=outcomes)
        if meter is not None:
            meter.committed(time.perf_counter() - started)

    def _send_copy(self, d: Delivery, decided: fate.Fate) -> None:
        """Publish the message's retry copy or dead letter, as ``fate_of`` decided it."""
        d.outcome, d.error = decided.outcome, decided.error
        d.settle_ticket = self.publisher().publish(
            exchange=decided.exchange, routing_key=decided.routing_key, body=d.body,
            properties=decided.properties, headers=decided.headers,
        )

    def _settle_messages(self, batch: list[Delivery], settled: dict) -> None:
        """Requeue what could not be settled, ack the rest (on RabbitMQ with one multiple-ack:
        every earlier delivery on the channel is settled by now, as batches run in order)."""
        to_ack = []
        for d in batch:
            if d.settle_ticket is not None and settled.get(d.settle_ticket, ConfirmTimeout("unknown")) is not None:
                d.message.reject(requeue=True)  # the copy did not make it: keep the original
                d.outcome = "requeued"
            else:
                to_ack.append(d)
        if self.multiple_ack and to_ack:
            max(to_ack, key=lambda d: d.message.delivery_tag).message.ack(multiple=True)
        else:
            for d in to_ack:
                d.message.ack()
        for part in self.parts:
            part.after_settle(batch)
