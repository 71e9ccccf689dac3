"""The error tree. A message's fate is decided by the type of the error it met.

- ``PermanentError`` and its subclasses: retrying cannot help; the message goes straight to
  its route's dead-letter queue.
- ``TransientDeliveryError``: the target may recover; broker-held delayed retries, then the
  dead-letter queue once the route's attempts are spent.

``reason`` is the operator-facing sentence that ends up in the ``x-gridbus-error`` header. It is
always one bounded line (see ``one_line``): whatever a reason quotes of the input, it travels in
dead-letter headers and log lines, so it must fit in one frame and print inert on a terminal.
Input is quoted into a reason only through ``quote``.
"""

from __future__ import annotations

import re
import unicodedata

#: Longest reason, in UTF-8 bytes, before it is cut (with a marker saying how much was cut).
MAX_REASON_BYTES = 2048
#: Longest quoted input inside a reason, in characters.
MAX_QUOTE_CHARS = 120

#: Advice that libraries write for programmers ("use XML_PARSE_HUGE option"): an operator
#: cannot act on it, and a publisher's oversized value is refused whatever the parser could do.
_LIBRARY_ADVICE = re.compile(
    r"[,;:]?\s*(?:\(?\s*)?(?:use XML_PARSE_HUGE option|use sys\.set_int_max_str_digits\(\)(?: to increase the limit)?)"
    r"(?:\s*\))?",
    re.IGNORECASE,
)


#: Characters a terminal may act on or that hide text: controls (ESC of every escape sequence,
#: C1), format characters (bidi overrides and isolates, zero-width marks), surrogates, unassigned
#: code points, line and paragraph separators.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Cn", "Zl", "Zp"})
#: Escapes written by name; the backslash is doubled, so every escape shown is unambiguous.
NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_char(char: str) -> str:
    """One character as it may be shown: itself, or a visible escape (``\\x1b``, ``\\u202e``)."""
    if char in NAMED_ESCAPES:
        return NAMED_ESCAPES[char]
    if unicodedata.category(char) not in HIDDEN_CATEGORIES:
        return char
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def inert(text: str) -> str:
    """``text`` with nothing a terminal would act on, on one line: every hidden character (see
    ``HIDDEN_CATEGORIES``), line break and tab as a visible escape; other text, Chinese included,
    is kept. The one rule for reasons, logs and what ``gridbus dlq`` prints."""
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # the common case, checked in C
    return "".join(escape_char(char) for char in text)


def cut(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, with a marker saying how much was cut."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= max_bytes:
        return text
    kept = data[: max(0, max_bytes - 40)].decode("utf-8", "ignore")
    return f"{kept} [... {len(data) - len(kept.encode('utf-8', 'surrogatepass'))} of {len(data)} bytes cut]"


def one_line(text: str, max_bytes: int = MAX_REASON_BYTES) -> str:
    """A reason as it may be carried: library advice removed, one line, inert, bounded."""
    text = _LIBRARY_ADVICE.sub("", str(text))
    return cut(inert(text), max_bytes)


def quote(value: object, max_chars: int = MAX_QUOTE_CHARS) -> str:
    """Input quoted into a reason: ``'...'``, inert, at most ``max_chars`` characters of it, with
    the full length said when it was cut. The one way a reason shows what a publisher sent."""
    text, mark = (value, "'") if isinstance(value, str) else (repr(value), "")
    shown = inert(text[:max_chars])
    more = f"... ({len(text)} characters)" if len(text) > max_chars else ""
    return f"{mark}{shown}{mark}{more}"


class GridbusError(Exception):
    """Base of every error gridbus raises on purpose."""

    #: Short stable name, used in dead-letter headers, logs and ``gridbus dlq list``.
    kind = "error"

    def __init__(self, reason: str):
        reason = one_line(reason)
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


class OutOfSequence(PermanentError):
    """The message carries a revision that does not follow the latest one gridbus holds for its
    business object from another source (a plan change from the command center numbered past
    marketing's latest plan revision, or a supply plan not newer than a change already held).
    Nothing was decided or written for it; the sender must renumber."""

    kind = "out-of-sequence"


class PermanentDeliveryError(PermanentError):
    """The target refused the message in a way that retrying cannot change (SOAP Client fault, HTTP 4xx)."""

    kind = "delivery-refused"


class AdapterError(PermanentError):
    """An adapter raised something that is not one of gridbus's delivery errors: a bug in the
    adapter, not a judgement on the message or the peer. Retrying would repeat it; the message is
    dead-lettered with the exception named, and replayed once the adapter is fixed."""

    kind = "adapter-error"


class PoisonMessage(PermanentError):
    """The message was taken up several times and never reached an outcome: it crashes or hangs the worker."""

    kind = "poison"


class TransientDeliveryError(GridbusError):
    """The target could not be reached or failed on its side (timeout, refused, HTTP 5xx, SOAP Server fault)."""

    kind = "delivery-failed"

    def exhausted(self, attempts: int) -> PermanentError:
        """What the dead letter says once the route's ``attempts`` are spent on this error."""
        last = _WILL_RETRY.sub("", self.reason)
        return RetriesExhausted(f"gave up after {attempts} attempts; last error: {last}")


class AwaitingReference(TransientDeliveryError):
    """The message names an object gridbus does not hold yet (a relation sent before its ends):
    retried through the broker for the route's retry period, then ``UnknownReference``."""

    kind = "awaiting-reference"

    def exhausted(self, attempts: int) -> PermanentError:
        last = _WILL_RETRY.sub("", self.reason)
        return UnknownReference(f"still unknown after {attempts} attempts: {last}")


#: "...; will retry" at the end of a transient error's reason: not so once the retries are spent.
_WILL_RETRY = re.compile(r"[;,]\s*will retry\s*$")


class RetriesExhausted(PermanentError):
    kind = "retries-exhausted"
