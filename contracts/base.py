"""What every contract class offers the runtime.

Inbound contracts (messages gridbus consumes) are classes with a ``message_type`` (the AMQP
``type`` property the publisher sets) and ``decode(body) -> instance`` that raises
``workers.errors.ContractViolation`` with a reason naming the problem.

Outbound contracts (what mappings return) have ``message_type``, ``content_type`` and
``encode() -> bytes``; SOAP requests instead offer ``to_soap() -> dict`` of the operation's
keyword arguments; canonical events also offer ``routing_key`` (``<noun>.<verb>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from gridbus.contracts.rules import DEFAULT_RULES, Rules


@dataclass(frozen=True)
class MappingContext:
    """Everything a mapping may know besides the message: passed in, never looked up.

    message_id: id of the outbound message this step produces (stable across retries, so the
        receiver can recognise a repeat).
    correlation_id: the business conversation this message belongs to.
    source_message_id: the inbound message's id.
    now: the time of processing, timezone-aware.
    decision: the result of the route's decision on durable state (``Route.decide``), the same
        on every redelivery; empty for routes without one.
    item: for a fan-out step (``Step.each``), the item this output is for.
    rules: the business rules configured for this deployment (``contracts.rules``).
    options: the worker's settings that mappings read (``Settings.mapping_options``: the readings
        flow's trading-center chunk size), the same for every message; a mapping falls back to its
        own default for an option not given.
    """

    route: str
    step: str
    message_id: str
    correlation_id: str
    source_message_id: str
    source_system: str
    now: datetime
    decision: Mapping[str, Any] = field(default_factory=dict)
    item: Any = None
    rules: Rules = DEFAULT_RULES
    options: Mapping[str, Any] = field(default_factory=dict)
