"""Canonical events: system-neutral facts in the IEC 61968-100 message envelope.

Published to the events topic exchange with routing key ``<noun>.<verb>`` (e.g.
``SupplyPlan.created``). The payload is one element in ``urn:gridbus:canonical:<Noun>:1``.
Events fan out to many consumers: they never carry personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from lxml import etree

from contracts.xml import DEFAULT_MAX_BYTES, parse_xml

NAMESPACE = "http://iec.ch/TC57/2011/schema/message"
SCHEMA = Path(__file__).with_name("message.xsd")

#: The IEC 61968-100 verbs.
VERBS = (
    "create", "created", "change", "changed", "cancel", "canceled", "close", "closed",
    "delete", "deleted", "execute", "executed", "get", "reply",
)


def payload_namespace(noun: str) -> str:
    """``SupplyPlan`` -> ``urn:gridbus:canonical:SupplyPlan:1``."""
    return f"urn:gridbus:canonical:{noun}:1"


@dataclass(frozen=True)
class CanonicalEvent:
    """One event. ``payload`` is the noun's element, kept as UTF-8 XML bytes (immutable, comparable).

    timestamp: when gridbus produced the event (timezone-aware).
    properties: extra header ``Property`` entries as (name, value) pairs.
    """

    content_type: ClassVar[str] = "application/xml"

    verb: str
    noun: str
    timestamp: datetime
    message_id: str
    correlation_id: str
    payload: bytes | etree._Element
    properties: tuple[tuple[str, str], ...] = ()
    comment: str | None = None
    revision: str = "1.0"
    source: str = "gridbus"

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"verb {self.verb!r} is not an IEC 61968-100 verb; known: {', '.join(VERBS)}")
        if not self.noun[:1].isupper() or not self.noun.isalnum():
            raise ValueError(f"noun {self.noun!r} must be a CIM-style name such as SupplyPlan")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        payload = self.payload
        if isinstance(payload, etree._Element):
            payload = etree.tostring(payload, encoding="utf-8")
            object.__setattr__(self, "payload", payload)
        root = parse_xml(payload, max_bytes=DEFAULT_MAX_BYTES)
        if etree.QName(root).namespace != payload_namespace(self.noun):
            raise ValueError(f"payload must be in namespace {payload_namespace(self.noun)}, got {root.tag}")

    @property
    def message_type(self) -> str:
        return self.noun

    @property
    def routing_key(self) -> str:
        return f"{self.noun}.{self.verb}"

    def to_element(self) -> etree._Element:
        message = etree.Element(_m("Message"), nsmap={None: NAMESPACE})
        header = etree.SubElement(message, _m("Header"))
        for name, value in (
            ("Verb", self.verb),
            ("Noun", self.noun),
            ("Revision", self.revision),
            ("Timestamp", self.timestamp.isoformat()),
            ("Source", self.source),
            ("MessageID", self.message_id),
            ("CorrelationID", self.correlation_id),
            ("Comment", self.comment),
        ):
            if value is not None:
                etree.SubElement(header, _m(name)).text = value
        for name, value in self.properties:
            prop = etree.SubElement(header, _m("Property"))
            etree.SubElement(prop, _m("Name")).text = name
            etree.SubElement(prop, _m("Value")).text = value
        etree.SubElement(message, _m("Payload")).append(parse_xml(self.payload, max_bytes=DEFAULT_MAX_BYTES))
        return message

    def encode(self) -> bytes:
        return etree.tostring(self.to_element(), encoding="utf-8", xml_declaration=True)


def _m(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"
