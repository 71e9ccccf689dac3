"""The one place where broker names are made. Everything else asks these functions."""

from __future__ import annotations

PREFIX = "gridbus"

#: Direct exchange that leads back into a route's work queue (routing key = route name).
#: Delay queues dead-letter into it when their TTL expires; DLQ replay publishes to it.
RETRY_EXCHANGE = f"{PREFIX}.retry"

#: Direct exchange for dead letters (routing key = route name), one queue per route behind it.
DEAD_LETTER_EXCHANGE = f"{PREFIX}.dlx"

#: Topic exchange of canonical IEC 61968-100 events, routing key ``<noun>.<verb>``.
EVENTS_EXCHANGE = f"{PREFIX}.events"

#: Alternate exchange of every system exchange: what no route is bound to ends here.
UNROUTED_EXCHANGE = f"{PREFIX}.unrouted"
UNROUTED_QUEUE = f"{PREFIX}.unrouted.dlq"


def system_exchange(system: str) -> str:
    """Topic exchange a system publishes into, e.g. ``pms.out``."""
    return f"{system}.out"


def system_inbox_exchange(system: str) -> str:
    """Topic exchange gridbus publishes into for a system that receives over AMQP, e.g. ``mkt.in``."""
    return f"{system}.in"


def system_inbox_queue(system: str) -> str:
    """Durable queue holding what gridbus sent to a system until it takes it."""
    return f"{system}.in.inbox"


def work_queue(route: str) -> str:
    return f"{PREFIX}.{route}"


def dead_letter_queue(route: str) -> str:
    return f"{PREFIX}.{route}.dlq"


def delay_queue(route: str, delay_s: float) -> str:
    return f"{PREFIX}.{route}.delay.{int(round(delay_s * 1000))}ms"
