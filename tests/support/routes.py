"""A small flow for testing the runtime itself, independent of any business contract.

``Note`` is a JSON message; its steps deliver to a recording adapter (``rec``) and to the
marketing inbox over AMQP (``mkt``). Text "crash" kills the worker process, "hang" hangs it,
"slow N" takes N seconds: the mapping is where a real bug (or a slow peer) would strike, so
that is where these strike.
"""

from __future__ import annotations

import json
import os
import time
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from gridbus.contracts.mkt.supply_plan import SupplyPlanPushed
from gridbus.contracts.pms.black_map import BlackMapPublished
from gridbus.routes.model import RetryPolicy, Route, Source, Step, Supersession, Target
from gridbus.contracts.errors import ContractViolation, TransientDeliveryError


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_type: ClassVar[str] = "Note"
    schema_version: str
    key: str
    revision: int = 1
    text: str

    @classmethod
    def decode(cls, body: bytes) -> "Note":
        try:
            note = cls.model_validate_json(body)
        except ValidationError as exc:
            raise ContractViolation(f"not a Note: {exc.errors(include_input=False)}") from exc
        if note.schema_version != "1":
            raise ContractViolation(f"Note version {note.schema_version!r} is not supported (expected '1')")
        return note


class NoteOut(BaseModel):
    message_type: ClassVar[str] = "NoteOut"
    content_type: ClassVar[str] = "application/json"
    message_id: str
    key: str
    revision: int
    text: str

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


def note_out(note: Note, ctx) -> NoteOut:
    if note.text == "crash":
        os._exit(3)
    if note.text == "hang":
        time.sleep(3600)
    if note.text == "outage":
        raise TransientDeliveryError(f"injected outage of the target (message {ctx.message_id}); will retry")
    if note.text.startswith("slow "):  # "slow 7": a mapping (or a peer) that takes 7 s
        time.sleep(float(note.text.split()[1]))
    if note.text == "unmappable":
        raise ValueError("no mapping for text 'unmappable'")
    return NoteOut(message_id=ctx.message_id, key=note.key, revision=note.revision, text=note.text)


def note_key(note: Note) -> str:
    return note.key


def note_revision(note: Note) -> int:
    return note.revision


FAST_RETRY = RetryPolicy(attempts=4, first_delay_s=0.3, max_delay_s=1.0)

NOTES = Route(
    name="test.notes",
    source=Source(system="pms", routing_key="note.published"),
    contract=Note,
    steps=(Step("rec", note_out, Target("rec", "Receive")), Step("mkt", note_out, Target("mkt", "note.out"))),
    retry=FAST_RETRY,
)

REVISED_NOTES = Route(
    name="test.revised-notes",
    source=Source(system="mkt", routing_key="note.revised"),
    contract=Note,
    steps=(Step("rec", note_out, Target("rec", "Receive")),),
    retry=FAST_RETRY,
    supersession=Supersession(key=note_key, revision=note_revision),
)

# Crash tests run the worker in a subprocess and read effects from the mkt inbox.
AMQP_ONLY_NOTES = Route(
    name="test.amqp-notes",
    source=Source(system="pms", routing_key="note.amqp"),
    contract=Note,
    steps=(Step("mkt", note_out, Target("mkt", "note.out")),),
    retry=FAST_RETRY,
    max_crashes=2,
)

ROUTES = (NOTES, REVISED_NOTES)
SUBPROCESS_ROUTES = (AMQP_ONLY_NOTES,)


def _soap_routes():
    from dataclasses import replace

    from gridbus.routes.hv_install import SUPPLY_PLAN_PUSHED

    return (replace(SUPPLY_PLAN_PUSHED, retry=FAST_RETRY),)


# A worker subprocess calling the command center's SOAP stub (the watchdog's tests).
SOAP_ROUTES = _soap_routes()


def note_body(key: str, text: str = "hello", revision: int = 1, version: str = "1") -> bytes:
    return json.dumps({"schema_version": version, "key": key, "revision": revision, "text": text}).encode()


def _refusals_only(message, ctx):
    raise AssertionError("the envelope tests' XML route only refuses messages")


# Envelope tests (tests/integration/test_envelope.py): hostile envelopes and oversized quotes,
# on a JSON route and an XML one, with the worker as a real process.
XML_REFUSALS = Route(
    name="test.xml-refusals",
    source=Source(system="pms", routing_key="black-map.test"),
    contract=BlackMapPublished,
    steps=(Step("mkt", _refusals_only, Target("mkt", "note.out")),),
    retry=FAST_RETRY,
)
JSON_REFUSALS = Route(
    name="test.json-refusals",
    source=Source(system="mkt", routing_key="supply-plan.test"),
    contract=SupplyPlanPushed,
    steps=(Step("mkt", _refusals_only, Target("mkt", "note.out")),),
    retry=FAST_RETRY,
)
ENVELOPE_ROUTES = (AMQP_ONLY_NOTES, XML_REFUSALS, JSON_REFUSALS)
