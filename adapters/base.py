"""The interface every target adapter implements.

An adapter delivers one mapped output to one system. ``deliver`` returns when the target has
taken responsibility for the output (a successful SOAP response, a publisher confirm) and raises
``TransientDeliveryError`` or ``PermanentDeliveryError`` otherwise. Adapters that can confirm
in batches (AMQP) also offer ``send(operation, output, context) -> ticket``: the runtime then
settles the tickets of a whole batch with one wait on the worker's publisher.
"""

from __future__ import annotations

from typing import Any, Protocol

from gridbus.contracts.base import MappingContext


class Adapter(Protocol):
    name: str

    def deliver(self, operation: str, output: Any, context: MappingContext) -> None: ...

    def close(self) -> None: ...
