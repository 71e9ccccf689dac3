"""Canonical events: system-neutral facts in the IEC 61968-100 message envelope.

Published to the events topic exchange with routing key ``<noun>.<verb>`` (e.g.
``SupplyPlan.created``). The payload is one element in ``urn:gridbus:canonical:<Noun>:1``.
Events fan out to many consumers: they never carry personal data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from lxml import etree

from gridbus.contracts.canonical.payload import NOT_XML_CHARACTERS, TEXT_UNUSUAL, BuiltPayload, escape_text
from gridbus.contracts.xml import DEFAULT_MAX_BYTES, parse_xml
from gridbus.contracts.times import china_time

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
    """One event. ``payload`` is the noun's element, kept as UTF-8 XML bytes (immutable, comparable);
    given as bytes, an lxml element or a ``BuiltPayload`` from ``PayloadBuilder``.

    timestamp: when gridbus produced the event (timezone-aware).
    properties: extra header ``Property`` entries as (name, value) pairs.
    """

    content_type: ClassVar[str] = "application/xml"

    verb: str
    noun: str
    timestamp: datetime
    message_id: str
    correlation_id: str
    payload: bytes | etree._Element | BuiltPayload
    properties: tuple[tuple[str, str], ...] = ()
    comment: str | None = None
    revision: str = "1.0"
    source: str = "gridbus"
    _body: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.verb not in VERBS:
            raise ValueError(f"verb {self.verb!r} is not an IEC 61968-100 verb; known: {', '.join(VERBS)}")
        if not self.noun[:1].isupper() or not self.noun.isalnum():
            raise ValueError(f"noun {self.noun!r} must be a CIM-style name such as SupplyPlan")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        object.__setattr__(self, "timestamp", china_time(self.timestamp))  # the instant, written +08:00
        payload = self.payload
        namespace = payload_namespace(self.noun)
        if isinstance(payload, BuiltPayload):
            # Well-formed by construction (see contracts.canonical.payload): only the size and the
            # namespace are left to check.
            data = payload.data
            object.__setattr__(self, "payload", data)
            if len(data) > DEFAULT_MAX_BYTES:
                parse_xml(data, max_bytes=DEFAULT_MAX_BYTES)  # refuses, naming the size
            if payload.namespace != namespace:
                raise ValueError(f"payload must be in namespace {namespace}, got {payload.tag}")
            object.__setattr__(self, "_body", data if _splices_as_is(payload.tag, data, namespace) else None)
            return
        if isinstance(payload, etree._Element):
            data = etree.tostring(payload, encoding="utf-8")
            object.__setattr__(self, "payload", data)
            # What parse_xml would make of the serialised element is the element itself, unless it
            # has parts a parse changes (see _reparses_as_is): those go through the full parse.
            root = payload if _reparses_as_is(payload, data) else parse_xml(data, max_bytes=DEFAULT_MAX_BYTES)
        else:
            root = parse_xml(payload, max_bytes=DEFAULT_MAX_BYTES)
        if etree.QName(root).namespace != namespace:
            raise ValueError(f"payload must be in namespace {namespace}, got {root.tag}")
        # The payload as it appears inside the envelope, spliced in by encode(); None when only
        # building the envelope tree gives the right bytes.
        body = data if root is payload else etree.tostring(root, encoding="utf-8")
        object.__setattr__(self, "_body", body if _splices_as_is(root.tag, body, namespace) else None)

    @property
    def message_type(self) -> str:
        return self.noun

    @property
    def routing_key(self) -> str:
        return f"{self.noun}.{self.verb}"

    def _envelope(self) -> etree._Element:
        """The envelope with an empty ``Payload`` element."""
        message = etree.Element(_MESSAGE, nsmap=_NSMAP)
        header = etree.SubElement(message, _HEADER)
        for tag, value in (
            (_VERB, self.verb),
            (_NOUN, self.noun),
            (_REVISION, self.revision),
            (_TIMESTAMP, self.timestamp.isoformat()),
            (_SOURCE, self.source),
            (_MESSAGE_ID, self.message_id),
            (_CORRELATION_ID, self.correlation_id),
            (_COMMENT, self.comment),
        ):
            if value is not None:
                etree.SubElement(header, tag).text = value
        for name, value in self.properties:
            prop = etree.SubElement(header, _PROPERTY)
            etree.SubElement(prop, _NAME).text = name
            etree.SubElement(prop, _VALUE).text = value
        etree.SubElement(message, _PAYLOAD)
        return message

    def _head(self) -> bytes | None:
        """The serialised envelope up to ``<Payload>``, as lxml writes it; None when a header value
        is not plain non-empty text XML can carry (lxml then writes it, or refuses it)."""
        if self.comment is None and len(self.properties) == 2:
            values = (
                self.verb, self.noun, self.revision, self.timestamp.isoformat(), self.source, self.message_id,
                self.correlation_id, *self.properties[0], *self.properties[1],
            )
            # Plain text all through (nothing to escape or refuse): the usual event, in one go.
            if all(type(value) is str and value for value in values) and not TEXT_UNUSUAL.search("".join(values)):
                return (_PLAIN_HEAD % values).encode("utf-8")
        parts = [_HEAD_START]
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
            if value is None:
                continue
            if type(value) is not str or not value or NOT_XML_CHARACTERS.search(value):
                return None
            parts.append(f"<{name}>{escape_text(value)}</{name}>")
        for name, value in self.properties:
            if type(name) is not str or type(value) is not str or not name or not value:
                return None
            if NOT_XML_CHARACTERS.search(name) or NOT_XML_CHARACTERS.search(value):
                return None
            parts.append(f"<Property><Name>{escape_text(name)}</Name><Value>{escape_text(value)}</Value></Property>")
        parts.append("</Header><Payload>")
        return "".join(parts).encode("utf-8")

    def to_element(self) -> etree._Element:
        message = self._envelope()
        message[-1].append(parse_xml(self.payload, max_bytes=DEFAULT_MAX_BYTES))
        return message

    def encode(self) -> bytes:
        body = self._body
        if body is None:
            return etree.tostring(self.to_element(), encoding="utf-8", xml_declaration=True)
        head = self._head()
        if head is not None:
            return b"".join((head, body, _PAYLOAD_END))
        envelope = etree.tostring(self._envelope(), encoding="utf-8", xml_declaration=True)
        if not envelope.endswith(_EMPTY_PAYLOAD_END):  # pragma: no cover - lxml always writes it so
            return etree.tostring(self.to_element(), encoding="utf-8", xml_declaration=True)
        return b"".join((envelope[: -len(_EMPTY_PAYLOAD_END)], _PAYLOAD_START, body, _PAYLOAD_END))


def _m(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"


_NSMAP = {None: NAMESPACE}
_MESSAGE, _HEADER, _PAYLOAD, _PROPERTY, _NAME, _VALUE = map(_m, ("Message", "Header", "Payload", "Property", "Name", "Value"))
_VERB, _NOUN, _REVISION, _TIMESTAMP, _SOURCE, _MESSAGE_ID, _CORRELATION_ID, _COMMENT = map(
    _m, ("Verb", "Noun", "Revision", "Timestamp", "Source", "MessageID", "CorrelationID", "Comment")
)
_HEAD_START = f"<?xml version='1.0' encoding='utf-8'?>\n<Message xmlns=\"{NAMESPACE}\"><Header>"
_PLAIN_HEAD = (
    _HEAD_START.replace("%", "%%")
    + "".join(f"<{name}>%s</{name}>" for name in ("Verb", "Noun", "Revision", "Timestamp", "Source", "MessageID", "CorrelationID"))
    + "<Property><Name>%s</Name><Value>%s</Value></Property>" * 2
    + "</Header><Payload>"
)
_EMPTY_PAYLOAD_END = b"<Payload/></Message>"
_PAYLOAD_START = b"<Payload>"
_PAYLOAD_END = b"</Payload></Message>"
_NAMESPACE_BYTES = NAMESPACE.encode("ascii")

# Whitespace as XML has it: text made only of these may be dropped by a parse (remove_blank_text).
_XML_SPACE = " \t\n\r"


def _reparses_as_is(element: etree._Element, data: bytes) -> bool:
    """True when ``parse_xml(data)`` (``data`` = the element serialised) gives the element back.

    That holds for a plain element tree: within the size limit, no tail, no CDATA section, no
    entity reference, comment or processing instruction (the parser drops those two), no empty or
    whitespace-only text (the parser drops blank text and an empty text reads back as none).
    Anything else is left to the parser, checks and all.
    """
    if len(data) > DEFAULT_MAX_BYTES or element.tail is not None or not isinstance(element.tag, str):
        return False
    if b"<![CDATA[" in data:
        return False
    for node in element.iter():
        if node.tag is etree.Entity or node.tag is etree.Comment or node.tag is etree.ProcessingInstruction:
            return False
        text, tail = node.text, node.tail
        if text is not None and not text.strip(_XML_SPACE):
            return False
        if tail is not None and node is not element and not tail.strip(_XML_SPACE):
            return False
    return True


def _splices_as_is(tag: str, body: bytes, namespace: str) -> bool:
    """True when ``body`` placed inside ``<Payload>`` reads exactly as ``root`` appended there would.

    Needs the payload to declare its own namespace as the default on its root (so nothing in it
    falls into the envelope's default namespace) and not to mention the envelope's namespace
    (lxml drops declarations the envelope already makes when the element is moved in).
    """
    start = _payload_start(tag, namespace)
    return body.startswith(start) and body[len(start):len(start) + 1] in (b">", b"/", b" ") and _NAMESPACE_BYTES not in body


@functools.lru_cache(maxsize=256)
def _payload_start(tag: str, namespace: str) -> bytes:
    return f"<{etree.QName(tag).localname} xmlns=\"{namespace}\"".encode("utf-8")
