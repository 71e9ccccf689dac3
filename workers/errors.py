"""The error tree. A message's fate is decided by the type of the error it met.

- ``PermanentError`` and its subclasses: retrying cannot help; the message goes straight to
  its route's dead-letter queue.
- ``TransientDeliveryError``: the target may recover; broker-held delayed retries, then the
  dead-letter queue once the route's attempts are spent.

``reason`` is the operator-facing sentence that ends up in the ``x-gridbus-error`` header.
"""

from __future__ import annotations


class GridbusError(Exception):
    """Base of every error gridbus raises on purpose."""

    #: Short stable name, used in dead-letter headers, logs and ``gridbus dlq list``.
    kind = "error"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PermanentError(GridbusError):
    kind = "permanent"


class ContractViolation(PermanentError):
    """The message does not meet its contract (schema, version, encoding, size, entities...)."""

    kind = "contract-violation"


class UnknownMessageType(ContractViolation):
    kind = "unknown-message-type"


class MissingMessageId(ContractViolation):
    kind = "missing-message-id"


class Unauthorised(PermanentError):
    """The message does not come from the system the route accepts."""

    kind = "unauthorised"


class MappingError(PermanentError):
    """The message is valid but cannot be translated (a business rule or a value with no mapping)."""

    kind = "mapping-error"


class UnknownReference(PermanentError):
    """The message refers to a business object gridbus does not hold in the state it needs
    (an agreement no binding awaits, a binding of another sales company)."""

    kind = "unknown-reference"


class PermanentDeliveryError(PermanentError):
    """The target refused the message in a way that retrying cannot change (SOAP Client fault, HTTP 4xx)."""

    kind = "delivery-refused"


class PoisonMessage(PermanentError):
    """The message was taken up several times and never reached an outcome: it crashes or hangs the worker."""

    kind = "poison"


class TransientDeliveryError(GridbusError):
    """The target could not be reached or failed on its side (timeout, refused, HTTP 5xx, SOAP Server fault)."""

    kind = "delivery-failed"


class RetriesExhausted(PermanentError):
    kind = "retries-exhausted"
