"""One archived letter as its page shows it: every value bounded, the body decoded only in the
charsets gridbus reads (``tools.letters``) and pretty-printed when it parses as JSON or as XML
(with the contracts' strict parser: no DOCTYPE, no entity, nothing fetched). What is printed is
made inert by the templates (``rendering.finalize``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lxml import etree

from gridbus.contracts.errors import GridbusError, escape_char
from gridbus.contracts.xml import parse_xml
from gridbus.tools.console.rendering import Inert, Lines
from gridbus.tools.dlq_cli import as_dead_letter
from gridbus.tools.letters import shown, visible
from gridbus.workers.store.dead_letters import ArchivedLetter

#: Characters of a property or header value shown before it is cut (with a marker), as the CLI.
VALUE_CHARS = 500
#: Characters of a body shown; ``--full`` on the CLI gives the exact bytes.
BODY_CHARS = 64_000


@dataclass(frozen=True)
class LetterView:
    letter: ArchivedLetter
    properties: list[tuple[Inert, Inert]]
    headers: list[tuple[Inert, Inert]]
    untrusted_headers: list[tuple[Inert, Inert]]
    body_heading: str
    pretty: Lines | None
    raw: Lines | Inert
    #: the body as text an operator may edit, or None when it is not text (bytes, base64)
    editable: Inert | None
    codec: str | None


def view(letter: ArchivedLetter) -> LetterView:
    dead = as_dead_letter(letter)
    body = dead.body_text()
    if body.shown_as in ("bytes", "base64"):
        raw = body.text if isinstance(body.text, str) else visible(body.text[:BODY_CHARS], layout=True)
        heading = f"{len(letter.body):,} bytes, shown as {body.shown_as}: {body.why}"
        return LetterView(letter, _pairs(letter.properties), _pairs(dead.trusted_headers),
                          _pairs(dead.untrusted_headers), heading, None, Inert(_cut(raw)), None, None)
    text = body.text
    heading = f"{len(letter.body):,} bytes, shown as {body.shown_as}"
    return LetterView(
        letter, _pairs(letter.properties), _pairs(dead.trusted_headers), _pairs(dead.untrusted_headers), heading,
        _pretty(letter.body, text), Lines(_cut(text)), edit_box(text), body.shown_as,
    )


def edit_box(text: str) -> Inert | None:
    """The body as the edit box holds it, or None when it cannot be edited here: only a body
    shown whole, with no control, format or bidi character (those are shown as escapes, and
    sending the escapes back would change the body). Autoescape still applies."""
    text = text.replace("\r\n", "\n")
    if len(text) > BODY_CHARS or not all(c in "\n\t\\" or escape_char(c) == c for c in text):
        return None
    return Inert(text)


def _pairs(mapping: dict) -> list[tuple[str, str]]:
    ordered = sorted(mapping.items(), key=lambda kv: str(kv[0]))
    return [(Inert(shown(k, 200)), Inert(shown(v, VALUE_CHARS))) for k, v in ordered if k != "application_headers"]


def _cut(text: str) -> str:
    if len(text) <= BODY_CHARS:
        return text
    return text[:BODY_CHARS] + f"\n...[{len(text) - BODY_CHARS:,} more characters cut]"


def _pretty(body: bytes, text: str) -> Lines | None:
    """The body indented, when it is a JSON document or well-formed XML; None otherwise."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return Lines(_cut(json.dumps(json.loads(text), ensure_ascii=False, indent=2)))
        except (ValueError, RecursionError):
            return None
    if stripped.startswith("<"):
        try:
            root = parse_xml(body)
        except GridbusError:
            return None
        return Lines(_cut(etree.tostring(root, encoding="unicode", pretty_print=True)))
    return None
