"""Reading a schema-valid BlackMapPublished by position gives what reading it by name gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridbus.contracts import xml
from gridbus.contracts.pms import BlackMapPublished
from gridbus.contracts.pms import black_map

EXAMPLE = (Path(__file__).parents[2] / "contracts" / "examples" / "pms.BlackMapPublished.xml").read_text("utf-8")

# Places between elements (after an opening tag or a closing tag) where a comment or PI may go.
_GAPS = [i + 1 for i, c in enumerate(EXAMPLE) if c == ">" and i > EXAMPLE.index("<BlackMapPublished")]
_EXTRAS = st.sampled_from(["<!-- note -->", "<?pi data?>", "<!--x-->\n  "])


@settings(max_examples=150, deadline=None)
@given(insertions=st.lists(st.tuples(st.sampled_from(_GAPS), _EXTRAS), max_size=3),
       name=st.sampled_from(["文三线", "a &amp; b", "<![CDATA[x<y]]>", "a<!--c-->b", "&#x6587;"]))
def test_fields_by_position_are_the_fields_by_name(insertions, name):
    text = EXAMPLE.replace("<Name>西溪精密机械1号专变</Name>", f"<Name>{name}</Name>")
    for gap, extra in sorted(insertions, reverse=True):
        gap += len(text) - len(EXAMPLE)
        if 0 < gap <= len(text):
            text = text[:gap] + extra + text[gap:]
    try:
        root = xml.parse_xml(text.encode("utf-8"))
        xml.validate(root, black_map.SCHEMA)
    except Exception:  # noqa: BLE001 - an insertion inside a leaf can make it invalid: nothing to compare
        return
    by_position = black_map._fields_in_order(root)
    if by_position is not None:
        assert by_position == black_map._fields_by_name(root)
    assert outcome(lambda: BlackMapPublished.decode(text.encode("utf-8"))) == outcome(
        lambda: xml.build_model(BlackMapPublished, black_map._fields_by_name(root), contract="BlackMapPublished"))


def outcome(make):
    try:
        return make()
    except Exception as exc:  # noqa: BLE001
        return (type(exc), str(exc))


def test_the_example_is_read_by_position():
    root = xml.parse_xml(EXAMPLE.encode("utf-8"))
    assert black_map._fields_in_order(root) == black_map._fields_by_name(root)


@pytest.mark.parametrize("where", ["<Equipment>", "<Item>", "</Feeder>"])
@pytest.mark.parametrize("extra", ["<!-- c -->", "<?pms x?>"])
def test_comments_and_instructions_among_the_children_are_dropped_when_parsing(where, extra):
    text = EXAMPLE.replace(where, where + extra, 1)
    root = xml.parse_xml(text.encode("utf-8"))
    xml.validate(root, black_map.SCHEMA)
    assert black_map._fields_in_order(root) == black_map._fields_by_name(root)
    assert BlackMapPublished.decode(text.encode("utf-8")) == BlackMapPublished.decode(EXAMPLE.encode("utf-8"))
