"""The interface every target adapter implements.

An adapter delivers one mapped output to one system. ``deliver`` returns when the target has
taken responsibility for the output (a successful SOAP response, a publisher confirm) and raises
``TransientDeliveryError`` or ``PermanentDeliveryError`` otherwise. Adapters that can confirm
in batches (AMQP) also offer ``send``/``flush``; the runtime uses them when present.
"""

from __future__ import annotations

from typing import Any, Protocol

from contracts.base import MappingContext


class Adapter(Protocol):
    name: str

    def deliver(self, operation: str, output: Any, context: MappingContext) -> None: ...

    def close(self) -> None: ...


class BatchAdapter(Adapter, Protocol):
    def send(self, operation: str, output: Any, context: MappingContext) -> int:
        """Start a delivery; returns a ticket. The outcome is known after ``flush``."""

    def flush(self) -> dict[int, Exception | None]:
        """Wait for every started delivery: ticket -> None on success, or the error."""
