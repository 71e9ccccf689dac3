"""The broker topology, derived from the route declarations and nothing else.

Per route: a quorum work queue bound to its source system's exchange and to the retry
exchange, one fixed-TTL quorum delay queue per back-off tier that dead-letters back into the
retry exchange, and a quorum dead-letter queue. Shared: the system exchanges (with an
alternate exchange that catches what no route is bound to), the retry, dead-letter and
canonical events exchanges, and an inbox queue for each system gridbus publishes to over AMQP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from kombu import Exchange, Queue

from gridbus.adapters.amqp import AMQP_TARGET_SYSTEMS
from gridbus.contracts import naming
from gridbus.routes.model import Route

#: Broker-side backstop: deliveries before RabbitMQ itself dead-letters a message. gridbus's own
#: poison guard (``Route.max_crashes``, counted in the store) acts first; this catches the rest.
BROKER_DELIVERY_LIMIT = 20


_AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


@dataclass(frozen=True)
class ExchangeDecl:
    name: str
    type: str
    arguments: dict = field(default_factory=dict)


@dataclass(frozen=True)
class QueueDecl:
    name: str
    arguments: dict = field(default_factory=dict)
    purpose: str = ""


@dataclass(frozen=True)
class BindingDecl:
    queue: str
    exchange: str
    routing_key: str


@dataclass
class Topology:
    exchanges: list[ExchangeDecl] = field(default_factory=list)
    queues: list[QueueDecl] = field(default_factory=list)
    bindings: list[BindingDecl] = field(default_factory=list)

    def queue(self, name: str) -> QueueDecl:
        return next(q for q in self.queues if q.name == name)


def _quorum(**arguments) -> dict:
    return {"x-queue-type": "quorum", **arguments}


def derive(routes: Iterable[Route]) -> Topology:
    routes = list(routes)
    topo = Topology()
    systems = sorted({r.source.system for r in routes if not r.source.internal})
    topo.exchanges += [
        ExchangeDecl(naming.UNROUTED_EXCHANGE, "fanout"),
        ExchangeDecl(naming.RETRY_EXCHANGE, "direct"),
        ExchangeDecl(naming.DEAD_LETTER_EXCHANGE, "direct"),
        ExchangeDecl(naming.EVENTS_EXCHANGE, "topic"),
    ]
    topo.exchanges += [
        ExchangeDecl(naming.system_exchange(s), "topic", {"alternate-exchange": naming.UNROUTED_EXCHANGE})
        for s in systems
    ]
    topo.queues.append(QueueDecl(naming.UNROUTED_QUEUE, _quorum(), "messages no route is bound to"))
    topo.bindings.append(BindingDecl(naming.UNROUTED_QUEUE, naming.UNROUTED_EXCHANGE, ""))
    for system in AMQP_TARGET_SYSTEMS:
        inbox = naming.system_inbox_queue(system)
        topo.exchanges.append(ExchangeDecl(naming.system_inbox_exchange(system), "topic"))
        topo.queues.append(QueueDecl(inbox, _quorum(), f"what gridbus delivered to {system}, until {system} takes it"))
        topo.bindings.append(BindingDecl(inbox, naming.system_inbox_exchange(system), "#"))
    for route in routes:
        topo.queues.append(
            QueueDecl(
                route.work_queue,
                _quorum(
                    **{
                        "x-delivery-limit": BROKER_DELIVERY_LIMIT,
                        "x-dead-letter-exchange": naming.DEAD_LETTER_EXCHANGE,
                        "x-dead-letter-routing-key": route.name,
                    },
                    **_AT_LEAST_ONCE,
                ),
                f"work queue of {route.name}",
            )
        )
        if not route.source.internal:  # internal messages arrive through the retry exchange only
            topo.bindings.append(BindingDecl(route.work_queue, route.source.exchange, route.source.routing_key))
        topo.bindings.append(BindingDecl(route.work_queue, naming.RETRY_EXCHANGE, route.name))
        for delay in route.retry.delay_tiers:
            topo.queues.append(
                QueueDecl(
                    route.delay_queue(delay),
                    _quorum(
                        **{
                            "x-message-ttl": int(round(delay * 1000)),
                            "x-dead-letter-exchange": naming.RETRY_EXCHANGE,
                            "x-dead-letter-routing-key": route.name,
                        },
                        **_AT_LEAST_ONCE,
                    ),
                    f"retry delay {delay:g} s of {route.name}",
                )
            )
        topo.queues.append(QueueDecl(route.dead_letter_queue, _quorum(), f"dead letters of {route.name}"))
        topo.bindings.append(BindingDecl(route.dead_letter_queue, naming.DEAD_LETTER_EXCHANGE, route.name))
    return topo


def kombu_exchange(decl: ExchangeDecl) -> Exchange:
    return Exchange(decl.name, type=decl.type, durable=True, arguments=decl.arguments or None)


def kombu_queue(decl: QueueDecl) -> Queue:
    return Queue(decl.name, durable=True, queue_arguments=decl.arguments or None, no_declare=False)


def declare(channel, topo: Topology) -> None:
    """Create everything in ``topo`` on ``channel`` (idempotent; arguments must match what exists)."""
    exchanges = {e.name: kombu_exchange(e)(channel) for e in topo.exchanges}
    for exchange in exchanges.values():
        exchange.declare()
    for decl in topo.queues:
        kombu_queue(decl)(channel).declare()
    for b in topo.bindings:
        channel.queue_bind(queue=b.queue, exchange=b.exchange, routing_key=b.routing_key)


def render(topo: Topology) -> str:
    """Human-readable listing for ``gridbus topology show``."""
    lines = ["exchanges:"]
    lines += [f"  {e.name:<36} {e.type:<7} {_args(e.arguments)}" for e in topo.exchanges]
    lines.append("queues:")
    lines += [f"  {q.name:<52} {q.purpose}\n  {'':<52} {_args(q.arguments)}" for q in topo.queues]
    lines.append("bindings:")
    lines += [f"  {b.exchange:<24} --[{b.routing_key or '*'}]--> {b.queue}" for b in topo.bindings]
    return "\n".join(lines)


def _args(arguments: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in arguments.items())
