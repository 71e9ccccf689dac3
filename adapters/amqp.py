"""AMQP targets: systems that receive over RabbitMQ (marketing) and the canonical events exchange.

Deliveries are published with confirms through the worker's publisher; ``send`` starts one and
the runtime waits for the broker's answers once per batch, so a batch costs one confirm round trip.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from gridbus.contracts import naming
from gridbus.contracts.base import MappingContext
from gridbus.contracts.errors import TransientDeliveryError


class Publisher(Protocol):
    """What the adapter needs of the worker's confirming publisher (``gridbus.workers.amqp``).

    ``template`` prepares what many publishes share; ``publish_as`` starts one publish and returns
    its ticket; ``wait`` blocks until the outstanding tickets are settled and maps each failed
    ticket to its error."""

    def template(
        self,
        exchange: str,
        routing_key: str,
        *,
        properties: dict,
        headers: dict,
        variable: tuple[str, ...] = (),
        variable_headers: tuple[str, ...] = (),
        mandatory: bool = True,
    ) -> Any: ...

    def publish_as(self, template: Any, body: bytes, values: tuple, header_values: tuple = ()) -> int: ...

    def wait(self) -> dict[int, Exception | None]: ...


#: Systems that receive from gridbus over AMQP, each through ``<system>.in`` into
#: ``<system>.in.inbox`` (the others are reached over SOAP). The topology declares their inboxes.
AMQP_TARGET_SYSTEMS = ("mkt", "mdc", "pms", "dmp")


class AmqpAdapter:
    """Publishes mapped outputs to ``exchange``; the routing key is the step's operation.

    mandatory: an output no queue is bound for is an error (True for a system's inbox); for
    the canonical events exchange, fan-out to whoever subscribed, possibly no one (False).
    routing_key_from_output: take the routing key from ``output.routing_key`` (events).
    """

    def __init__(
        self,
        name: str,
        exchange: str,
        publisher: Callable[[], Publisher],
        *,
        mandatory: bool = True,
        routing_key_from_output: bool = False,
    ):
        self.name = name
        self.exchange = exchange
        self._publisher = publisher
        self.mandatory = mandatory
        self.routing_key_from_output = routing_key_from_output
        #: (routing key, type, content type, route) -> what those outputs' publishes share
        self._templates: dict[tuple, Any] = {}

    def send(self, operation: str, output: Any, context: MappingContext) -> int:
        routing_key = output.routing_key if self.routing_key_from_output else operation
        key = (routing_key, output.message_type, output.content_type, context.route)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= 1024:
                self._templates.clear()
            template = self._templates[key] = self._publisher().template(
                self.exchange,
                routing_key,
                properties={
                    "message_id": None,
                    "correlation_id": None,
                    "type": output.message_type,
                    "content_type": output.content_type,
                    "timestamp": None,
                    "app_id": "gridbus",
                },
                headers={"x-gridbus-route": context.route, "x-gridbus-source-message-id": None},
                variable=("message_id", "correlation_id", "timestamp"),
                variable_headers=("x-gridbus-source-message-id",),
                mandatory=self.mandatory,
            )
        return self._publisher().publish_as(
            template,
            output.encode(),
            (context.message_id, context.correlation_id, int(context.now.timestamp())),
            (context.source_message_id,),
        )

    def deliver(self, operation: str, output: Any, context: MappingContext) -> None:
        """One delivery, confirmed before returning (outside the runtime's batches)."""
        ticket = self.send(operation, output, context)
        error = self._publisher().wait().get(ticket)
        if error is not None:
            raise TransientDeliveryError(f"{self.name}: {error}") from error

    def close(self) -> None:
        """The publisher belongs to the worker; nothing of the adapter's own to close."""


def build_amqp_adapters(publisher: Callable[[], Publisher]) -> dict[str, AmqpAdapter]:
    return {
        **{s: AmqpAdapter(s, naming.system_inbox_exchange(s), publisher) for s in AMQP_TARGET_SYSTEMS},
        "events": AmqpAdapter(
            "events", naming.EVENTS_EXCHANGE, publisher, mandatory=False, routing_key_from_output=True
        ),
    }
