"""Route declarations: what a flow consumes, how it is checked, mapped and delivered.

A route is data. The runtime (``workers``) derives the broker topology, the processing
pipeline and the retry behaviour from it; adding a flow never changes the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from gridbus.contracts import naming

#: The upstream systems gridbus knows, by routing-key prefix.
SYSTEMS = ("tc", "mkt", "pms", "mdc", "cmd")

#: The source of messages gridbus sends itself (schedules that fell due). They enter a route's
#: work queue only through the retry exchange, which only gridbus may write to.
INTERNAL = "gridbus"


@dataclass(frozen=True)
class Source:
    """Where a route's messages come from.

    ``system`` owns the exchange, and its RabbitMQ user (the system code, or what
    ``GRIDBUS_SOURCE_USERS`` names) is the only AMQP ``user_id`` the route accepts: the broker
    checks ``user_id`` against the publishing connection's user, so a message that names
    another user, or none, is refused as unauthorised.
    """

    system: str
    routing_key: str

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS and self.system != INTERNAL:
            raise ValueError(f"unknown source system {self.system!r}; known: {', '.join(SYSTEMS)}, {INTERNAL}")

    @property
    def internal(self) -> bool:
        """Messages gridbus sends itself (a schedule fell due): no system exchange, no system user."""
        return self.system == INTERNAL

    @property
    def exchange(self) -> str:
        return naming.RETRY_EXCHANGE if self.internal else naming.system_exchange(self.system)


@dataclass(frozen=True)
class Target:
    """Where a step's output goes: an adapter by name and one of its operations.

    For AMQP adapters the operation is the routing key; for SOAP adapters it is the WSDL
    operation name. The canonical events adapter derives the routing key from the event
    (``<noun>.<verb>``) and ignores ``operation``.
    """

    adapter: str
    operation: str = ""


@dataclass(frozen=True)
class Step:
    """One effect of a route: ``mapping(message, context)`` delivered to ``target``.

    Each step is recorded separately in the idempotency store, so a retry after a partial
    failure repeats only the steps that have not taken effect. A mapping that returns ``None``
    has nothing to deliver for this message (a condition of the route's decision was not met).

    each: fan-out. ``each(message, context)`` yields ``(key, item)`` pairs; the mapping then runs
        once per item with ``context.item`` set, and every item is delivered and recorded as a
        step of its own (``<name>/<key>``) with its own stable output message id, so a retry
        repeats only the items that did not take effect.
    """

    name: str
    mapping: Callable[..., Any]
    target: Target
    each: Callable[..., Any] | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """How transient delivery failures are retried.

    attempts: delivery attempts in all before the message is dead-lettered (default 8). Each
        attempt is one try: a transient failure sends the message to its broker-held retry at
        once, and nothing waits in the worker.
    first_delay_s / max_delay_s: broker-held back-off before attempt 2, doubling up to the cap.
    """

    attempts: int = 8
    first_delay_s: float = 5.0
    max_delay_s: float = 600.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if not 0 < self.first_delay_s <= self.max_delay_s:
            raise ValueError("need 0 < first_delay_s <= max_delay_s")

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based) before the next one."""
        return min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s)

    @property
    def delay_tiers(self) -> tuple[float, ...]:
        """Distinct delays in use: one fixed-TTL delay queue per tier."""
        return tuple(sorted({self.delay_for(a) for a in range(1, self.attempts)}))


@dataclass(frozen=True)
class Supersession:
    """Messages about one business object carry a revision; an older one never overwrites a newer.

    ``key`` and ``revision`` are functions of the decoded message. A message whose revision is
    not newer than the latest one accepted for its key is recorded as superseded and not delivered.
    """

    key: Callable[[Any], str]
    revision: Callable[[Any], int]


@dataclass(frozen=True)
class Route:
    """One flow: source binding, contract, steps, retry policy.

    decide: the route's business decision on durable state, ``decide(message, state, now) ->
        routes.state.Decision`` (see ``contracts.state``). It runs once per message: its writes,
        schedules and result are committed together with the fact that it ran, and a
        redelivered message gets the recorded result, so the steps (which read it as
        ``context.decision``) do the same thing again, and the state changes only once. A
        decision that depends on a configured business rule takes a keyword ``rules``
        (``contracts.rules.Rules``, e.g. which metering categories may join the market) and is
        handed the worker's.
    trace_keys: ``trace_keys(message) -> iterable of str``, the business keys (credit code,
        user unit...) under which every outcome and delivery of the message is journalled for
        ``gridbus trace``.
    max_body_bytes: larger bodies are dead-lettered before parsing (default 1 MiB).
    oversize_advice: what the refusal of a larger body tells the sender to do (a readings batch:
        split it into parts).
    max_header_bytes: a larger application headers table (as encoded) is dead-lettered before
        anything reads it (default 16 KiB).
    max_crashes: processing starts without an outcome (worker crashed or hung) before the
        message is dead-lettered as poison (default 3).
    """

    name: str
    source: Source
    contract: Any
    steps: tuple[Step, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    supersession: Supersession | None = None
    decide: Callable[..., Any] | None = None
    trace_keys: Callable[[Any], Any] | None = None
    max_body_bytes: int = 1024 * 1024
    oversize_advice: str = ""
    max_header_bytes: int = 16 * 1024
    max_crashes: int = 3

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError(f"route {self.name}: at least one step is needed")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"route {self.name}: step names must be unique, got {names}")

    @property
    def work_queue(self) -> str:
        return naming.work_queue(self.name)

    @property
    def dead_letter_queue(self) -> str:
        return naming.dead_letter_queue(self.name)

    def delay_queue(self, delay_s: float) -> str:
        return naming.delay_queue(self.name, delay_s)
