"""Replies: what gridbus tells a system about the request it sent (a readings batch, a master-data change).

An IEC 61968-100 ``ResponseMessage``: ``Header`` with ``Verb`` reply, the request's ``Noun`` and
``CorrelationID`` = the request's message id; ``Reply`` with ``Result`` OK, PARTIAL (some of its
objects refused) or FAILED, and one ``Error`` per problem: a stable ``code``, a ``level``, a
bounded single-line ``reason``, optional ``details``, the ``xpath`` of the object in the request,
and the object's ``ID`` (with ``idType`` and ``idAuthority``). A business refusal is a reply, not
a dead letter: a dead letter means gridbus could not process the message at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

from lxml import etree

from gridbus.contracts.canonical.envelope import NAMESPACE
from gridbus.contracts.errors import one_line
from gridbus.contracts.times import china_time

SCHEMA = Path(__file__).with_name("message.xsd")

Result = Literal["OK", "PARTIAL", "FAILED"]
Level = Literal["INFORM", "WARNING", "FATAL", "CATASTROPHIC"]
LEVELS = ("INFORM", "WARNING", "FATAL", "CATASTROPHIC")

#: Longest ``reason`` and ``details`` a reply carries, in UTF-8 bytes (cut as every reason is).
REASON_MAX = 500


@dataclass(frozen=True)
class ObjectId:
    """An object's identifier as 61968-100 writes it: ``<ID idType=".." idAuthority="..">text</ID>``."""

    value: str
    id_type: str | None = None
    id_authority: str | None = None


@dataclass(frozen=True)
class ReplyError:
    code: str
    level: Level
    reason: str
    xpath: str | None = None
    id: ObjectId | None = None
    details: str | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level {self.level!r} is not one of {', '.join(LEVELS)}")
        if not self.code:
            raise ValueError("an error needs a code")


def result_of(errors: tuple[ReplyError, ...], objects: int) -> Result:
    """OK when nothing was refused, FAILED when every one of ``objects`` was, PARTIAL between.
    A refused object is one with a FATAL (or CATASTROPHIC) error; warnings leave it accepted."""
    refused = {e.xpath or e.code for e in errors if e.level in ("FATAL", "CATASTROPHIC")}
    if not refused:
        return "OK"
    return "FAILED" if len(refused) >= objects else "PARTIAL"


@dataclass(frozen=True)
class Reply:
    """One reply, sent to the requesting system's inbox (``<system>.in``) as routing key ``operation``."""

    content_type: ClassVar[str] = "application/xml"
    message_type: ClassVar[str] = "ResponseMessage"

    noun: str
    result: Result
    correlation_id: str
    message_id: str
    timestamp: datetime
    errors: tuple[ReplyError, ...] = ()
    source: str = "gridbus"
    revision: str = "1.0"

    def __post_init__(self) -> None:
        if self.result not in ("OK", "PARTIAL", "FAILED"):
            raise ValueError(f"result {self.result!r} is not OK, PARTIAL or FAILED")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        object.__setattr__(self, "timestamp", china_time(self.timestamp))  # the instant, written +08:00

    def to_element(self) -> etree._Element:
        message = etree.Element(_m("ResponseMessage"), nsmap={None: NAMESPACE})
        header = etree.SubElement(message, _m("Header"))
        for name, value in (
            ("Verb", "reply"),
            ("Noun", self.noun),
            ("Revision", self.revision),
            ("Timestamp", self.timestamp.isoformat()),
            ("Source", self.source),
            ("MessageID", self.message_id),
            ("CorrelationID", self.correlation_id),
        ):
            etree.SubElement(header, _m(name)).text = value
        reply = etree.SubElement(message, _m("Reply"))
        etree.SubElement(reply, _m("Result")).text = self.result
        for error in self.errors:
            element = etree.SubElement(reply, _m("Error"))
            etree.SubElement(element, _m("code")).text = error.code
            etree.SubElement(element, _m("level")).text = error.level
            etree.SubElement(element, _m("reason")).text = one_line(error.reason, REASON_MAX)
            if error.details is not None:
                etree.SubElement(element, _m("details")).text = one_line(error.details, REASON_MAX)
            if error.xpath is not None:
                etree.SubElement(element, _m("xpath")).text = error.xpath
            if error.id is not None:
                ident = etree.SubElement(element, _m("ID"))
                ident.text = error.id.value
                if error.id.id_type is not None:
                    ident.set("idType", error.id.id_type)
                if error.id.id_authority is not None:
                    ident.set("idAuthority", error.id.id_authority)
        return message

    def encode(self) -> bytes:
        return etree.tostring(self.to_element(), encoding="utf-8", xml_declaration=True)


def _m(name: str) -> str:
    return f"{{{NAMESPACE}}}{name}"
