"""Canonical payloads built straight to bytes, serialised exactly as lxml serialises the same tree.

``PayloadBuilder(noun)`` makes the noun's element in ``urn:gridbus:canonical:<Noun>:1``;
``add(parent, name, attributes)`` adds a child, ``set_text(node, text)`` gives it text. ``build()`` returns a ``BuiltPayload``
(UTF-8 bytes, well-formed by construction: names checked by lxml, text checked for characters
XML cannot carry and escaped as libxml2 escapes it), which ``CanonicalEvent`` takes without
parsing it again. A tree with empty or whitespace-only text, which the XML parser would not read
back as written, is built as an lxml element instead, so the event treats it as before.

Text and attribute values refused here are refused exactly where lxml refuses them, with a
``ValueError`` (tests/unit/test_canonical_payload.py checks the character set against lxml).
"""

from __future__ import annotations

import functools
import re

from lxml import etree

# Characters lxml refuses in text and attribute values (XML 1.0 Char production, Python side).
NOT_XML_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# libxml2's escaping with UTF-8 output: text nodes and (double-quoted) attribute values.
_TEXT_SPECIAL = re.compile("[&<>\r]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_SPECIAL = re.compile('[&<>"\r\n\t]')
_ATTRIBUTE_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"}
)

# Whitespace as XML has it.
XML_SPACE = " \t\n\r"

_NOT_XML_COMPATIBLE = "All strings must be XML compatible: Unicode or ASCII, no NULL bytes or control characters"


def escape_text(text: str) -> str:
    """``text`` as libxml2 writes a text node (UTF-8 output); the caller has checked its characters."""
    return text.translate(_TEXT_ESCAPES) if _TEXT_SPECIAL.search(text) else text


def escape_attribute(value: str) -> str:
    return value.translate(_ATTRIBUTE_ESCAPES) if _ATTRIBUTE_SPECIAL.search(value) else value


@functools.cache
def _checked_name(namespace: str, name: str) -> str:
    """``name`` once lxml has accepted ``{namespace}name`` as a tag (raises ValueError otherwise)."""
    etree.QName(namespace, name)
    return name


@functools.cache
def _checked_attribute_name(name: str) -> str:
    etree.Element("a", {name: ""})
    return name


# A node of the tree under construction: [name, attributes (dict), serialised attributes (a leading
# space before each), text, escaped text, children]. Lists rather than objects: a payload has
# dozens of elements and each message builds one.
PayloadNode = list

_NAME, _ATTRIBUTES, _SERIALISED_ATTRIBUTES, _TEXT, _ESCAPED_TEXT, _CHILDREN = range(6)

# Characters that need a closer look in text: escaped, or refused (plain text has none).
TEXT_UNUSUAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class UnfitText(ValueError):
    """Text with characters XML cannot carry (lxml refuses it with a ValueError)."""


class BuiltPayload:
    """A payload made by ``PayloadBuilder``: ``data`` is the element serialised in UTF-8."""

    __slots__ = ("data", "tag", "namespace")

    def __init__(self, data: bytes, tag: str, namespace: str, *, _token: object = None):
        if _token is not _BUILDER:
            raise TypeError("BuiltPayload is made by PayloadBuilder.build(); pass bytes or an element instead")
        self.data = data
        self.tag = tag
        self.namespace = namespace


_BUILDER = object()


class PayloadBuilder:
    """Builds the payload tree; refuses what lxml refuses, at the same step and with the same error."""

    def __init__(self, noun: str, namespace: str):
        self.noun = noun
        self.namespace = namespace
        self._names = _names(namespace)
        self.root: PayloadNode = [_checked_name(namespace, noun), None, "", None, None, []]
        self._reads_back = True

    def add(self, parent: PayloadNode, name: str, attributes: dict | None = None, text: str | None = None) -> PayloadNode:
        """Add child ``name`` to ``parent``, as ``etree.SubElement(parent, name, attributes)`` and then
        ``.text = text`` would: lxml's errors for a bad name or attribute, ``UnfitText`` (a
        ValueError) for text XML cannot carry."""
        if name not in self._names:
            self._names[name] = _checked_name(self.namespace, name)
        serialised = ""
        if attributes:
            serialised = self._attributes(attributes)
        escaped = text
        if text is not None:
            if type(text) is not str:
                raise TypeError(f"text must be a str, got {type(text).__name__}")
            if TEXT_UNUSUAL.search(text):
                if NOT_XML_CHARACTERS.search(text):
                    raise UnfitText(_NOT_XML_COMPATIBLE)
                escaped = text.translate(_TEXT_ESCAPES)
            if not text.strip(XML_SPACE):
                self._reads_back = False  # the parser would not read it back as written
        node = [name, attributes, serialised, text, escaped, []]
        parent[_CHILDREN].append(node)
        return node

    def _attributes(self, attributes: dict) -> str:
        serialised = ""
        for key, value in attributes.items():
            if type(key) is not str or key[:1] == "{" or type(value) is not str or NOT_XML_CHARACTERS.search(value):
                etree.Element("a", {key: value})  # lxml's own refusal, if it refuses
                self._reads_back = False  # otherwise lxml builds the tree
                return ""
            serialised += f' {_checked_attribute_name(key)}="{escape_attribute(value)}"'
        return serialised

    def build(self) -> BuiltPayload | etree._Element:
        if not self._reads_back:
            return self.element()
        parts = [f'<{self.noun} xmlns="{self.namespace}"']
        _write_content(self.root, parts)
        return BuiltPayload("".join(parts).encode("utf-8"), f"{{{self.namespace}}}{self.noun}", self.namespace, _token=_BUILDER)

    def element(self) -> etree._Element:
        """The same tree as an lxml element."""
        root = etree.Element(f"{{{self.namespace}}}{self.noun}", nsmap={None: self.namespace})
        _add_elements(root, self.root, self.namespace)
        return root


@functools.cache
def _names(namespace: str) -> dict[str, str]:
    """Names lxml has accepted in ``namespace`` (shared by the builders of that namespace)."""
    return {}


def _add_elements(element: etree._Element, node: PayloadNode, namespace: str) -> None:
    for child in node[_CHILDREN]:
        sub = etree.SubElement(element, f"{{{namespace}}}{child[_NAME]}", child[_ATTRIBUTES] or {})
        if child[_TEXT] is not None:
            sub.text = child[_TEXT]
        _add_elements(sub, child, namespace)


def _write_content(node: PayloadNode, parts: list[str]) -> None:
    """Write from after ``<name`` to the end of ``node``."""
    _, _, attributes, _, text, children = node
    if text is None and not children:
        parts.append(attributes + "/>")
        return
    parts.append(attributes + ">")
    if text is not None:
        parts.append(text)
    for child in children:
        if child[_ESCAPED_TEXT] is not None and not child[_CHILDREN]:
            name = child[_NAME]
            parts.append(f"<{name}{child[_SERIALISED_ATTRIBUTES]}>{child[_ESCAPED_TEXT]}</{name}>")
        else:
            parts.append("<" + child[_NAME])
            _write_content(child, parts)
    parts.append(f"</{node[_NAME]}>")


class PayloadTemplate:
    """A payload of fixed shape, written in one go: leaf elements in order, then a group element
    repeated once per item, each holding leaves of its own (e.g. BlackMap: mRID ... Feeder, then
    one Equipment per item with mRID, kind, name).

    ``fill(leaves, items)`` returns what ``PayloadBuilder`` builds from the same ``add`` calls,
    or None when any value is not plain text: not a str, empty or whitespace only, or with
    characters to escape or refuse. The caller then uses ``PayloadBuilder``, which escapes or
    refuses them as lxml does.
    """

    __slots__ = ("noun", "namespace", "_tag", "_head", "_item", "_end", "_leaf_count", "_item_leaf_count")

    def __init__(self, noun: str, namespace: str, leaves: tuple[str, ...], group: str, group_leaves: tuple[str, ...]):
        for name in (noun, *leaves, group, *group_leaves):
            _checked_name(namespace, name)
        if not leaves or not group_leaves:
            raise ValueError("a template needs at least one leaf, and one in its group")
        self.noun = noun
        self.namespace = namespace
        self._tag = f"{{{namespace}}}{noun}"
        # Filled with %-formatting: only the namespace can hold a '%' (XML names cannot).
        start = f'<{noun} xmlns="{namespace.replace("%", "%%")}">'
        self._head = start + "".join(f"<{name}>%s</{name}>" for name in leaves)
        self._item = f"<{group}>" + "".join(f"<{name}>%s</{name}>" for name in group_leaves) + f"</{group}>"
        self._end = f"</{noun}>"
        self._leaf_count = len(leaves)
        self._item_leaf_count = len(group_leaves)

    def fill(self, leaves: tuple, items: list[tuple]) -> BuiltPayload | None:
        if len(leaves) != self._leaf_count:
            raise ValueError(f"{self.noun}: {len(leaves)} values for {self._leaf_count} leaves")
        values = list(leaves)
        for item in items:
            if len(item) != self._item_leaf_count:
                raise ValueError(f"{self.noun}: {len(item)} values for {self._item_leaf_count} leaves of an item")
            values.extend(item)
        for value in values:
            if type(value) is not str or not value.strip(XML_SPACE):
                return None
        if TEXT_UNUSUAL.search("".join(values)):
            return None
        text = (self._head + self._item * len(items) + self._end) % tuple(values)
        return BuiltPayload(text.encode("utf-8"), self._tag, self.namespace, _token=_BUILDER)
