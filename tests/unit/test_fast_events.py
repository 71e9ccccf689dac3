"""Template-built canonical events are the bytes the generic builder writes, refusals included."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent, PayloadBuilder, payload_namespace
from gridbus.contracts.canonical.payload import PayloadTemplate
from gridbus.contracts.pms import BlackMapPublished
from gridbus.mappings import events
from gridbus.contracts.errors import MappingError

EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))
NS = payload_namespace("BlackMap")
SOURCE = BlackMapPublished.decode((EXAMPLES / "pms.BlackMapPublished.xml").read_bytes())


def context(message_id: str = "gb-0001-step", source_message_id: str = "src-1") -> MappingContext:
    return MappingContext(route="r", step="s", message_id=message_id, correlation_id="HV2026110300017",
                          source_message_id=source_message_id, source_system="pms", now=NOW)


def generic_black_map_created(message, ctx) -> CanonicalEvent:
    """black_map_created as written with ``_Payload`` only (no template)."""
    return events._event("created", events.black_map_payload(message), ctx)


def outcome(mapping, message, ctx):
    try:
        event = mapping(message, ctx)
    except MappingError as exc:
        return ("refused", exc.reason)
    try:
        return (event, event.payload, event.encode())
    except ValueError as exc:  # lxml refuses a header value
        return (event, event.payload, ("refused", str(exc)))


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
PLAIN = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="&<>"), min_size=1, max_size=10)
ANY_TEXT = st.one_of(TEXT, PLAIN, st.sampled_from([" ", "", "\t\n", "a&b", "<x>", "\r", "\x00", "文三线"]))


@settings(max_examples=400, deadline=None)
@given(graph_id=ANY_TEXT, substation=ANY_TEXT, names=st.lists(ANY_TEXT, min_size=1, max_size=4), message_id=ANY_TEXT,
       source_message_id=ANY_TEXT)
def test_black_map_event_is_what_the_builder_makes(graph_id, substation, names, message_id, source_message_id):
    message = SOURCE.model_copy(update={
        "graph_id": graph_id, "substation": substation,
        "equipment": tuple(SOURCE.equipment[0].model_copy(update={"name": n}) for n in names),
    })
    ctx = context(message_id, source_message_id)
    assert outcome(events.black_map_created, message, ctx) == outcome(generic_black_map_created, message, ctx)


def test_example_black_map_event_is_template_built_and_unchanged():
    ctx = context()
    fast, generic = events.black_map_created(SOURCE, ctx), generic_black_map_created(SOURCE, ctx)
    assert fast == generic and fast.encode() == generic.encode()


@pytest.mark.parametrize("leaves, items", [
    (("a", "b"), [("c",), ("d",)]),
    (("a", "b"), []),
    (("文", "x y"), [("z",)]),
])
def test_template_writes_what_the_builder_writes(leaves, items):
    template = PayloadTemplate("BlackMap", NS, ("mRID", "name"), "Equipment", ("kind",))
    builder = PayloadBuilder("BlackMap", NS)
    builder.add(builder.root, "mRID", None, leaves[0])
    builder.add(builder.root, "name", None, leaves[1])
    for (kind,) in items:
        builder.add(builder.add(builder.root, "Equipment"), "kind", None, kind)
    built, expected = template.fill(leaves, items), builder.build()
    assert (built.data, built.tag, built.namespace) == (expected.data, expected.tag, expected.namespace)


class _Text(str):
    """A str subclass: its text may not be what %-formatting writes."""


@pytest.mark.parametrize("value", ["", " ", "\t\n", "a&b", "<", "\r", "\x01", "\x00", "a\x00b", 3, None, _Text("x")])
def test_template_declines_what_is_not_plain_text(value):
    template = PayloadTemplate("BlackMap", NS, ("mRID",), "Equipment", ("kind",))
    assert template.fill((value,), []) is None
    assert template.fill(("a",), [(value,)]) is None


def test_template_refuses_bad_names_and_wrong_value_counts():
    with pytest.raises(ValueError):
        PayloadTemplate("BlackMap", NS, ("bad name",), "Equipment", ("kind",))
    template = PayloadTemplate("BlackMap", NS, ("mRID",), "Equipment", ("kind",))
    with pytest.raises(ValueError):
        template.fill(("a", "b"), [])
    with pytest.raises(ValueError):
        template.fill(("a",), [("b", "c")])


def test_namespace_with_percent_signs_is_written_as_is():
    namespace = "urn:x:%20:1"
    built = PayloadTemplate("BlackMap", namespace, ("mRID",), "Equipment", ("kind",)).fill(("%s",), [("%d",)])
    assert built.data == b'<BlackMap xmlns="urn:x:%20:1"><mRID>%s</mRID><Equipment><kind>%d</kind></Equipment></BlackMap>'


HEADER_TEXT = st.one_of(TEXT, st.sampled_from(["", " ", "a&b", "\x00"]))


@settings(max_examples=300, deadline=None)
@given(message_id=HEADER_TEXT, correlation_id=HEADER_TEXT, name=HEADER_TEXT, value=HEADER_TEXT,
       comment=st.none() | TEXT)
def test_plain_envelope_head_is_what_the_general_head_writes(message_id, correlation_id, name, value, comment):
    event = CanonicalEvent(verb="created", noun="BlackMap", timestamp=NOW, message_id=message_id,
                           correlation_id=correlation_id, payload=events._BLACK_MAP.fill(("a",) * 6, []),
                           properties=(("sourceSystem", "pms"), (name, value)), comment=comment)
    assert event._head() == _general_head(event)


def _general_head(event: CanonicalEvent) -> bytes | None:
    """The head as the general (value by value) path writes it."""
    from gridbus.contracts.canonical import envelope

    parts = [envelope._HEAD_START]
    for tag, value in (("Verb", event.verb), ("Noun", event.noun), ("Revision", event.revision),
                       ("Timestamp", event.timestamp.isoformat()), ("Source", event.source),
                       ("MessageID", event.message_id), ("CorrelationID", event.correlation_id),
                       ("Comment", event.comment)):
        if value is None:
            continue
        if type(value) is not str or not value or envelope.NOT_XML_CHARACTERS.search(value):
            return None
        parts.append(f"<{tag}>{envelope.escape_text(value)}</{tag}>")
    for name, value in event.properties:
        if type(name) is not str or type(value) is not str or not name or not value:
            return None
        if envelope.NOT_XML_CHARACTERS.search(name) or envelope.NOT_XML_CHARACTERS.search(value):
            return None
        parts.append(f"<Property><Name>{envelope.escape_text(name)}</Name><Value>{envelope.escape_text(value)}</Value></Property>")
    parts.append("</Header><Payload>")
    return "".join(parts).encode("utf-8")
