"""What happens to one inbound message, up to the point where its outputs are handed over.

The checks run in this order, each ending the message with a typed error: body size, message
id, source system (``user_id``), message type, then idempotency (already finished: a
duplicate), contract decoding, supersession, the route's decision on durable state (once per
message; a redelivery reads the recorded result), and the route's steps. Steps already recorded
as effects are skipped, so a retry repeats only what did not take effect.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from gridbus.contracts.base import MappingContext
from gridbus.contracts.rules import DEFAULT_RULES, Rules
from gridbus.contracts import naming
from gridbus.routes.model import Route, Step
from gridbus.workers import envelope
from gridbus.workers import headers as H
from gridbus.contracts.errors import (
    AdapterError,
    ContractViolation,
    GridbusError,
    MappingError,
    MissingMessageId,
    TransientDeliveryError,
    Unauthorised,
    UnknownMessageType,
    one_line,
    quote,
)
from gridbus.workers.store import Store

#: Namespace of outbound message ids: uuid5(route/step/inbound id), stable across retries, so
#: every receiver can recognise a repeat of the same output.
OUTPUT_ID_NAMESPACE = uuid.UUID("4d1b2c66-8f7e-4a43-9d0e-0c6b8f1e2a10")


_NAMESPACE_BYTES = OUTPUT_ID_NAMESPACE.bytes
#: The RFC 4122 variant bits over the first hex digit of the clock sequence: 10xx.
_VARIANT_DIGIT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def output_message_id(route: str, step: str, source_message_id: str) -> str:
    """``uuid5(OUTPUT_ID_NAMESPACE, "route/step/id")``, computed as RFC 4122 does it without the
    ``UUID`` object (a hot path: every output of every message)."""
    h = hashlib.sha1(_NAMESPACE_BYTES + f"{route}/{step}/{source_message_id}".encode()).hexdigest()
    # version 5 in the 13th digit, the variant in the 17th
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT_DIGIT[h[16]]}{h[17:20]}-{h[20:32]}"


@dataclass(frozen=True, slots=True)
class Decoded:
    """What decoding a delivery's body gave: the contract's message, or the error refusing it."""

    message: Any = None
    error: GridbusError | None = None

    def value(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.message


class Delivery:
    """One inbound message on one route, and what became of it.

    The message's id, correlation id and body are read once, when the delivery is taken.
    """

    __slots__ = (
        "route", "message", "started", "outcome", "error", "tickets", "settle_ticket", "trace_keys", "outputs",
        "delivered", "message_id", "correlation_id", "body", "decoded", "checked", "envelope",
    )

    def __init__(self, route: Route, message: Any):
        self.route = route
        self.message = message  # kombu.Message
        self.started = time.monotonic()
        self.outcome: str | None = None  # delivered, duplicate, superseded, retry-scheduled, dead-lettered, requeued
        self.error: GridbusError | None = None
        self.tickets: dict[int, str] = {}  # publisher ticket -> step name
        self.settle_ticket: int | None = None  # ticket of the retry or dead-letter copy
        self.trace_keys: tuple[str, ...] = ()  # business keys this message is journalled under
        self.outputs: dict[str, tuple[str, str]] = {}  # step -> (target, output message id)
        self.delivered: list[str] = []  # steps that took effect in this processing
        self.decoded: Decoded | None = None  # set once, by ``Pipeline.decode``
        self.checked = False  # passed ``Pipeline.check`` (which depends on nothing but the message)
        properties = message.properties
        self.message_id: str | None = properties.get("message_id") or None
        self.correlation_id: str = properties.get("correlation_id") or self.message_id or ""
        body = message.body
        self.body: bytes = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        self.envelope = envelope.of_delivery(message, route.max_header_bytes)  # what may be read of the headers

    def __repr__(self) -> str:
        return f"Delivery(route={self.route.name!r}, message_id={self.message_id!r}, outcome={self.outcome!r})"

    @property
    def properties(self) -> dict:
        return self.message.properties

    @property
    def headers(self) -> dict:
        """The headers gridbus may read and carry: on a message from a system exchange, without
        the publisher's ``x-gridbus-*`` headers (see ``workers.envelope``)."""
        return self.envelope.headers

    @property
    def attempt(self) -> int:
        return self.envelope.attempt

    @property
    def redelivered(self) -> bool:
        return bool(self.message.delivery_info.get("redelivered")) or self.envelope.delivery_count > 0

    @property
    def source_user(self) -> str | None:
        """The publishing system: ``user_id`` as checked by the broker, or, for a copy that came
        back through gridbus's own retry exchange (writable only by gridbus), the header gridbus
        wrote with the original ``user_id``."""
        if self.message.delivery_info.get("exchange") == naming.RETRY_EXCHANGE:
            user = self.envelope.headers.get(H.SOURCE_USER)
            return user if type(user) is str else None
        return self.properties.get("user_id")


class Pipeline:
    def __init__(
        self,
        store: Store,
        adapters: dict[str, Any],
        clock,
        source_users: dict[str, str] | None = None,
        rules: Rules = DEFAULT_RULES,
        options: dict[str, Any] | None = None,
    ):
        self.store = store
        self.adapters = adapters
        self.clock = clock
        self.source_users = source_users or {}  # system -> its RabbitMQ user; absent: the system code
        self.rules = rules  # handed to every mapping (MappingContext.rules), and to decisions that ask
        self._decide_args: dict[Any, dict[str, Any]] = {}  # by decision function
        self.options = dict(options or {})  # what mappings read of the settings (MappingContext.options)

    def check(self, d: Delivery) -> None:
        route = d.route
        if d.envelope.error is not None:
            raise d.envelope.error
        if len(d.body) > route.max_body_bytes:
            advice = f"; {route.oversize_advice}" if route.oversize_advice else ""
            raise ContractViolation(
                f"body of {len(d.body)} bytes exceeds the limit of {route.max_body_bytes} bytes of route {route.name}{advice}"
            )
        if not d.message_id:
            raise MissingMessageId(f"no message_id property: route {route.name} needs one to recognise repeats")
        user = d.source_user
        system = route.source.system
        expected = self.source_users.get(system, system)
        if not user:
            raise Unauthorised(
                f"no user_id property: route {route.name} accepts only messages published by "
                f"system {system!r} as user {expected!r} with user_id set"
            )
        if user != expected:
            raise Unauthorised(
                f"published by {user!r}, but route {route.name} accepts only system {system!r} as user {expected!r}"
            )
        expected = route.contract.message_type
        got = d.properties.get("type")
        if got != expected:
            raise UnknownMessageType(
                f"message type {quote(got)} is not known on route {route.name} (routing key "
                f"{route.source.routing_key!r}), which carries {expected!r}"
            )

    def start_all(self, items: list[tuple[Delivery, tuple[str | None, set[str]] | None]]) -> None:
        """Run each delivery's checks and steps; sets ``d.outcome`` or ``d.error`` on each. Async
        steps leave tickets. ``known`` is the message's outcome and recorded steps when the caller
        looked them up for a whole batch at once (None: looked up here).

        The steps are taken one at a time across all the deliveries: every message's first step,
        then every message's second, and so on. Each message's steps still run in the route's
        order, and a message's failure still ends its remaining steps. Mappings and publishes of
        one kind in a row keep their code and data warm in the processor's caches, as
        ``decode_ahead`` does for decoding (about a tenth faster on the black-map route, by
        ``bench/batch_path.py``). No step of one message depends on another message's steps:
        what decisions and supersession read is committed before any step runs.
        """
        ready = []
        for d, known in items:
            try:
                prepared = self._prepare(d, known)
            except GridbusError as exc:
                d.error = exc
                continue
            if prepared is not None:
                ready.append((d, *prepared))
        index = 0
        while ready:
            for d, message, now, decision, done in ready:
                try:
                    self._run_step(d, d.route.steps[index], message, now, decision, done)
                except GridbusError as exc:
                    d.error = exc
            index += 1
            running = []
            for item in ready:
                d = item[0]
                if d.error is not None:
                    continue
                if index < len(d.route.steps):
                    running.append(item)
                else:
                    d.outcome = "delivered"
            ready = running

    def _prepare(self, d: Delivery, known) -> tuple | None:
        """The checks up to the steps: ``(message, now, decision, steps done)``, or None when the
        message is finished here (a duplicate, superseded, or a route without steps)."""
        route = d.route
        if not d.checked:
            self.check(d)
        if known is None:
            known = (
                self.store.idempotency.outcome(route.name, d.message_id),
                self.store.idempotency.steps_done(route.name, d.message_id),
            )
        outcome, done = known
        if outcome is not None:
            d.outcome = "duplicate"
            return None
        message = self.decode(d).value()
        if route.trace_keys is not None:
            d.trace_keys = self._trace_keys(route, message)
        if route.supersession is not None and not self._claim(route, message, d.message_id):
            d.outcome = "superseded"
            return None
        now = self.clock()
        decision = self._decide(d, message, now) if route.decide is not None else {}
        if decision.get("trace_keys"):  # business objects the decision touched besides the message's own
            d.trace_keys = tuple(dict.fromkeys((*d.trace_keys, *map(str, decision["trace_keys"]))))
        if not route.steps:
            d.outcome = "delivered"
            return None
        return message, now, decision, done

    @staticmethod
    def _trace_keys(route: Route, message) -> tuple[str, ...]:
        try:
            return tuple(dict.fromkeys(str(k) for k in route.trace_keys(message) if k))
        except Exception as exc:  # noqa: BLE001
            raise MappingError(f"no trace keys: {type(exc).__name__}: {exc}") from exc

    def _decide_arguments(self, route) -> dict[str, Any]:
        """``rules=`` for a decision function that takes it (see ``Route.decide``), else nothing."""
        args = self._decide_args.get(route.decide)
        if args is None:
            args = {"rules": self.rules} if "rules" in inspect.signature(route.decide).parameters else {}
            self._decide_args[route.decide] = args
        return args

    def _decide(self, d: Delivery, message, now) -> dict:
        """The route's decision on this message: decided and committed once, then read back."""
        route = d.route
        recorded = self.store.state.decision(route.name, d.message_id)
        if recorded is not None:
            return recorded
        state = self.store.state.view()
        try:
            decision = route.decide(message, state, now, **self._decide_arguments(route))
        except GridbusError:
            raise
        except Exception as exc:  # noqa: BLE001 - a rule bug ends this message, not the worker
            raise MappingError(f"decision: {type(exc).__name__}: {exc}") from exc
        try:
            result = json.loads(json.dumps(decision.result, ensure_ascii=False))  # as a redelivery will read it
        except (TypeError, ValueError) as exc:
            raise MappingError(f"decision result is not JSON: {exc}") from exc
        if self.store.state.commit_decision(route.name, d.message_id, decision, state.read, now):
            return result
        recorded = self.store.state.decision(route.name, d.message_id)
        if recorded is not None:  # a competing worker decided this message meanwhile
            return recorded
        raise TransientDeliveryError(
            f"route {route.name}: state this message was decided on was changed meanwhile by another "
            "message; deciding again on the next attempt"
        )

    def decode_ahead(self, batch: list[Delivery], known: dict) -> None:
        """Decode the batch's messages that will need it (they pass the checks and are not yet
        finished), all in one go before ``start_all`` takes them: decoding is pure, and the
        parser, schemas and models stay warm in the processor's caches (about a third faster
        than decoding between the other steps of each message). ``start_all`` raises a refusal
        kept here at the point where it decodes."""
        for d in batch:
            if d.decoded is not None:
                continue
            try:
                self.check(d)
            except GridbusError:
                continue  # start_all refuses it the same way, before decoding
            d.checked = True
            found = known.get((d.route.name, d.message_id))
            if found is not None and found[0] is not None:
                continue  # a duplicate: never decoded
            self.decode(d)

    @staticmethod
    def decode(d: Delivery) -> Decoded:
        """The one decoder of a delivery's body, run once per delivery (work-ahead included);
        a decoder's own bug is a contract violation, never a crash of the worker."""
        if d.decoded is None:
            try:
                d.decoded = Decoded(message=d.route.contract.decode(d.body))
            except GridbusError as exc:
                d.decoded = Decoded(error=exc)
            except Exception as exc:  # noqa: BLE001 - a decoder bug must not crash the worker
                error = ContractViolation(f"could not decode as {d.route.contract.message_type}: {exc}")
                error.__cause__ = exc
                d.decoded = Decoded(error=error)
        return d.decoded

    def _claim(self, route: Route, message, message_id: str) -> bool:
        try:
            key = str(route.supersession.key(message))
            revision = int(route.supersession.revision(message))
        except Exception as exc:  # noqa: BLE001
            raise MappingError(f"no business key or revision: {exc}") from exc
        return self.store.idempotency.claim_revision(route.name, key, revision, message_id)

    def _run_step(self, d: Delivery, step: Step, message, now, decision: dict, done: set[str]) -> None:
        context = MappingContext(
            route=d.route.name,
            step=step.name,
            message_id=output_message_id(d.route.name, step.name, d.message_id),
            correlation_id=d.correlation_id,
            source_message_id=d.message_id,
            source_system=d.route.source.system,
            now=now,
            decision=decision,
            rules=self.rules,
            options=self.options,
        )
        if step.each is None:
            if step.name not in done:
                self._deliver_step(d, step, step.name, message, context)
            return
        try:
            items = [(str(key), item) for key, item in step.each(message, context)]
        except GridbusError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise MappingError(f"step {step.name}: items: {type(exc).__name__}: {exc}") from exc
        for key, item in items:
            name = f"{step.name}/{key}"
            if name not in done:
                message_id = output_message_id(d.route.name, name, d.message_id)
                self._deliver_step(d, step, name, message, replace(context, step=name, message_id=message_id, item=item))

    def _deliver_step(self, d: Delivery, step: Step, name: str, message, context: MappingContext) -> None:
        route = d.route
        try:
            output = step.mapping(message, context)
        except GridbusError:
            raise
        except Exception as exc:  # noqa: BLE001 - a mapping bug ends this message, not the worker
            raise MappingError(f"step {name}: {type(exc).__name__}: {exc}") from exc
        if output is None:
            return  # nothing to deliver for this message
        adapter = self.adapters.get(step.target.adapter)
        if adapter is None:
            raise MappingError(f"step {name}: no adapter named {step.target.adapter!r} is configured")
        if route.trace_keys is not None:  # what the trace journal says was sent, and where
            target = f"{step.target.adapter} {step.target.operation or getattr(output, 'routing_key', '')}".strip()
            d.outputs[name] = (target, context.message_id)
        if hasattr(adapter, "send"):
            try:
                ticket = adapter.send(step.target.operation, output, context)
            except GridbusError:
                raise
            except Exception as exc:  # noqa: BLE001 - the adapter's own bug ends this message, not the worker
                raise _adapter_error(step, adapter, exc) from exc
            d.tickets[ticket] = name
            return
        self._deliver_now(adapter, step, output, context)
        self.store.idempotency.record(effects=[(route.name, d.message_id, name)])
        d.delivered.append(name)

    def _deliver_now(self, adapter, step: Step, output, context: MappingContext) -> None:
        """Synchronous delivery, tried once. A transient failure goes to the message's broker-held
        retry at once (a delay queue), never to a wait in this loop, which serves every route of its
        lane; a peer that keeps failing is not even called while its circuit breaker is open
        (``workers.breaker``, put in front of each synchronous adapter by ``workers.bootstrap``)."""
        try:
            adapter.deliver(step.target.operation, output, context)
        except GridbusError:
            raise
        except Exception as exc:  # noqa: BLE001 - the adapter's own bug ends this message, not the worker
            raise _adapter_error(step, adapter, exc) from exc


def _adapter_error(step: Step, adapter, exc: Exception) -> AdapterError:
    """Not one of gridbus's delivery errors: the adapter's bug, named; retrying would repeat it."""
    name = getattr(adapter, "name", step.target.adapter)
    return AdapterError(
        f"step {step.name}: adapter {name} raised {type(exc).__name__}: {one_line(str(exc), 500)}; "
        "fix the adapter, then replay the message from the dead-letter queue"
    )
