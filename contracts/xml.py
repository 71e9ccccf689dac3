"""The one strict, safe way gridbus reads XML from other systems.

Every XML contract goes through ``parse_xml`` (size, encoding, DTD and well-formedness checks),
then ``expect_root`` (namespace = contract version) and ``validate`` (the contract's XSD).
Each failure raises ``ContractViolation`` with a reason an operator can act on.

Why the encoding is checked here and not left to libxml2: legacy grid systems send GBK
(``encoding="GBK"``) and sometimes send GBK bytes under a UTF-8 declaration. libxml2 would
either guess or fail with a message about an unrelated byte; decoding strictly ourselves gives
a clear refusal and lets lxml always parse plain UTF-8.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import TypeVar

from lxml import etree
from pydantic import BaseModel, ValidationError

from gridbus.contracts.errors import ContractViolation, one_line, quote

M = TypeVar("M", bound=BaseModel)

#: Default largest XML body a contract accepts, in bytes (the route may set a lower limit).
DEFAULT_MAX_BYTES = 1024 * 1024

#: How many schema errors a refusal lists.
MAX_REPORTED_ERRORS = 5
#: Longest message of libxml2's quoted in a reason (it quotes values of up to ~64 KB).
MAX_LIBRARY_MESSAGE_BYTES = 300

# Entities are never expanded, no DTD is loaded, nothing is fetched, no huge trees.
# A DTD is refused outright anyway (see ``parse_xml``); these settings are the second line.
_SAFE = dict(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=True)
_PARSER = etree.XMLParser(**_SAFE)

# The same settings, reading every input as UTF-8 whatever its declaration says: ``parse_xml`` has
# checked the bytes strictly in the declared encoding and hands lxml UTF-8 only. Comments and
# processing instructions are dropped: a value is read as XML Schema reads it, so
# ``<Feeder>10kV<!-- x -->城东线</Feeder>`` is "10kV城东线" (the parser joins the text around them),
# not just the text before the comment.
_UTF8_PARSER = etree.XMLParser(**_SAFE, encoding="utf-8", remove_comments=True, remove_pis=True)

# Declared encoding (normalised) -> Python codec used for the strict check.
_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gbk": "gbk",
    "cp936": "gbk",
    "gb2312": "gb2312",
    "gb18030": "gb18030",
}

_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}

_DECLARATION = re.compile(
    rb"<\?xml\s+version\s*=\s*([\"'])1\.[01]\1"
    rb"(?:\s+encoding\s*=\s*([\"'])(?P<encoding>[A-Za-z][A-Za-z0-9._-]*)\2)?"
    rb"(?:\s+standalone\s*=\s*([\"'])(?:yes|no)\4)?\s*\?>"
)

# What may precede the root element besides a DOCTYPE: whitespace, comments, processing instructions.
_PROLOG_ITEM = re.compile(r"\s+|<!--.*?-->|<\?.*?\?>", re.DOTALL)


def parse_xml(body: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> etree._Element:
    """Parse ``body`` into its root element, or raise ``ContractViolation`` saying why not.

    Refused: bodies over ``max_bytes`` (checked before anything else), bytes that do not decode
    in the declared encoding (UTF-8 when none is declared; UTF-8 and GBK/GB2312/GB18030 are
    supported), any DOCTYPE (entity expansion tricks such as XXE and billion laughs need one),
    and malformed XML.
    """
    if len(body) > max_bytes:
        raise ContractViolation(f"XML body is {len(body)} bytes, over the limit of {max_bytes} bytes")
    data, text = _decode(body)
    _refuse_doctype(text)
    try:
        # UTF-8 bodies reach lxml as the original bytes (already checked strictly above): the parser
        # is told the encoding, so the declaration cannot make libxml2 read them any other way.
        root = etree.fromstring(data, _UTF8_PARSER)
    except etree.XMLSyntaxError as exc:
        raise ContractViolation(f"malformed XML: {one_line(exc.msg, MAX_LIBRARY_MESSAGE_BYTES)} (line {exc.lineno})") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise ContractViolation(_DTD_REFUSAL)
    return root


_DTD_REFUSAL = (
    "XML with a DOCTYPE/DTD is refused: entity declarations (external entities, entity "
    "expansion) are never accepted; send the document without a DOCTYPE"
)


def _decode(body: bytes) -> tuple[bytes, str]:
    """Decode strictly in the declared encoding: ``(UTF-8 bytes for lxml, the decoded text)``.

    A UTF-8 body is handed on as it came (without a byte order mark); any other encoding is
    re-encoded to UTF-8 with its declaration replaced by as many line breaks as it spanned.
    """
    for bom, name in _OTHER_BOMS.items():
        if body.startswith(bom):
            raise ContractViolation(f"unsupported encoding {name} (byte order mark); send UTF-8 or GBK")
    has_bom = body.startswith(_UTF8_BOM)
    if has_bom:
        body = body[len(_UTF8_BOM):]

    declared = None
    declaration_end = 0
    if body.startswith(b"<?xml") and body[5:6].isspace():
        match = _DECLARATION.match(body)
        if match is None:
            raise ContractViolation("malformed XML declaration (line 1)")
        declaration_end = match.end()
        if match.group("encoding"):
            declared = match.group("encoding").decode("ascii")

    label = (declared or "UTF-8").upper()
    codec = _ENCODINGS.get(label.lower().replace("_", "-"))
    if codec is None:
        raise ContractViolation(
            f"unsupported encoding {label!r} declared; supported: UTF-8, GBK, GB2312, GB18030"
        )
    if has_bom and codec != "utf-8":
        raise ContractViolation(f"declared {label} but the body starts with a UTF-8 byte order mark")
    try:
        text = body.decode(codec, errors="strict")
    except UnicodeDecodeError as exc:
        how = f"declared {label}" if declared else "no encoding declared (so UTF-8)"
        raise ContractViolation(
            f"{how} but bytes are not valid {label} (first bad byte at offset {exc.start})"
        ) from None
    if codec == "utf-8":
        return body, text
    # The declaration is ASCII in every supported encoding, so its length in characters equals its
    # length in bytes. Keep its line breaks so that line numbers in later errors stay true.
    declaration = text[:declaration_end]
    text = "\n" * declaration.count("\n") + text[declaration_end:]
    return text.encode("utf-8"), text


def _refuse_doctype(text: str) -> None:
    """Refuse a DOCTYPE in the prolog before libxml2 sees its entity declarations."""
    position = 0
    while match := _PROLOG_ITEM.match(text, position):
        position = match.end()
    if text.startswith("<!DOCTYPE", position):
        raise ContractViolation(_DTD_REFUSAL)


def expect_root(root: etree._Element, namespace: str, local_name: str, *, version: int | str = 1) -> None:
    """Check the root element: the namespace carries the contract version.

    Raises ``ContractViolation("expected {ns}Root version 1, got {other-ns}Root")``.
    """
    if root.tag == _qualified(namespace, local_name):
        return
    expected = etree.QName(namespace, local_name)
    actual = etree.QName(root)
    if actual != expected:
        raise ContractViolation(f"expected {expected.text} version {version}, got {quote(actual.text)}")


@functools.cache
def load_schema(path: Path) -> etree.XMLSchema:
    """Load an XSD once per process (on first use, never at import) and keep it."""
    # The XSD ships with gridbus: trusted, but read with the same strict parser all the same.
    document = etree.parse(str(path), _PARSER)
    return etree.XMLSchema(document)


_SCHEMAS: dict[object, etree.XMLSchema] = {}


def validate(root: etree._Element, schema: Path) -> None:
    """Validate against the XSD at ``schema``; refuse listing the first errors with line and path."""
    xml_schema = _SCHEMAS.get(schema)
    if xml_schema is None:
        xml_schema = _SCHEMAS[schema] = load_schema(Path(schema))
    if xml_schema.validate(root):
        return
    errors = list(xml_schema.error_log)
    tree = root.getroottree()
    shown = "; ".join(
        f"line {error.line} at {_element_path(tree, error.path)}: {_describe(tree, error)}"
        for error in errors[:MAX_REPORTED_ERRORS]
    )
    more = f" (and {len(errors) - MAX_REPORTED_ERRORS} more)" if len(errors) > MAX_REPORTED_ERRORS else ""
    raise ContractViolation(f"XML does not match schema {Path(schema).name}: {shown}{more}")


# "{urn:gridbus:pms:black-map:1}Kind" -> "Kind" in libxml2's messages (the root check covers namespaces).
_NAMESPACE_IN_MESSAGE = re.compile(r"\{(?:urn|https?):[^}\s']*\}")

#: Elements that carry personal data: a schema error names them but never quotes their value,
#: since reasons travel into dead-letter headers and log lines.
PERSONAL_ELEMENTS = frozenset(
    {"CustomerName", "UserName", "LegalRepresentative", "ContactPhone", "ContactName", "IdNumber", "Phone"}
)


def _describe(tree: etree._ElementTree, error) -> str:
    message = _NAMESPACE_IN_MESSAGE.sub("", error.message).rstrip(".")
    found = tree.xpath(error.path) if error.path else []
    if found and isinstance(found[0], etree._Element) and etree.QName(found[0]).localname in PERSONAL_ELEMENTS:
        for text in {found[0].text or "", (found[0].text or "").strip()} - {""}:
            message = message.replace(f"'{text}'", "'***'")
    return one_line(message, MAX_LIBRARY_MESSAGE_BYTES)


def _element_path(tree: etree._ElementTree, path: str | None) -> str:
    """libxml2 reports ``/*/*[7]/*[1]/*[2]``; operators want ``/BlackMapPublished/Equipment/Item[1]/Kind``."""
    found = tree.xpath(path) if path else []
    if not found or not isinstance(found[0], etree._Element):
        return path or "/"
    steps = []
    element = found[0]
    while element is not None:
        name = etree.QName(element).localname
        parent = element.getparent()
        if parent is not None:
            same = [sibling for sibling in parent if sibling.tag == element.tag]
            if len(same) > 1:
                name += f"[{same.index(element) + 1}]"
        steps.append(name)
        element = parent
    return "/" + "/".join(reversed(steps))


def child_text(parent: etree._Element, namespace: str, name: str) -> str | None:
    """Text of ``parent``'s first child ``{namespace}name`` ('' when empty, None when absent)."""
    child = parent.find(f"{{{namespace}}}{name}")
    if child is None:
        return None
    return child.text or ""


@functools.cache
def _qualified(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class ChildTexts:
    """Reads ``child_text`` of several children in one pass; made once per contract, used per message.

    ``ChildTexts(namespace, names, keys).read(parent)`` gives the same answers as calling
    ``child_text(parent, namespace, name)`` for each name (the first child of that name wins, ''
    when it is empty, None when there is none), under ``keys`` (one per name; the names by default).
    """

    __slots__ = ("_wanted", "_keys")

    def __init__(self, namespace: str, names: tuple[str, ...], keys: tuple[str, ...] | None = None):
        keys = tuple(keys or names)
        self._keys = keys
        self._wanted: dict[str, str] = {}
        for name, key in zip(names, keys, strict=True):
            self._wanted.setdefault(_qualified(namespace, name), key)

    def read(self, parent: etree._Element) -> dict[str, str | None]:
        wanted = self._wanted
        texts: dict[str, str | None] = dict.fromkeys(self._keys)
        for child in parent:
            key = wanted.get(child.tag)
            if key is not None and texts[key] is None:
                texts[key] = child.text or ""
        return texts


def grandchildren(parent: etree._Element, namespace: str, child: str, grandchild: str) -> list[etree._Element]:
    """``children(parent, namespace, "child/grandchild")`` without the path machinery."""
    child_tag, grandchild_tag = _qualified(namespace, child), _qualified(namespace, grandchild)
    return [item for element in parent if element.tag == child_tag for item in element if item.tag == grandchild_tag]


def children(parent: etree._Element, namespace: str, path: str) -> list[etree._Element]:
    """Children along ``path`` (``"Equipment/Item"``) in ``namespace``."""
    return parent.findall(_path(namespace, path))


@functools.cache
def _path(namespace: str, path: str) -> str:
    return "/".join(_qualified(namespace, step) for step in path.split("/"))


def build_model(model: type[M], fields: dict, *, contract: str) -> M:
    """Make the pydantic model from fields read out of a schema-valid document.

    The XSD has already checked structure and lexical types; this adds the model's own rules.
    """
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise ContractViolation(f"{contract}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError, *, limit: int = MAX_REPORTED_ERRORS) -> str:
    """``field a.b[0].c: message; ...`` without the offending values (they may be personal data)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [
        f"field {_location(error['loc'])}: {error['msg']}" if error["loc"] else error["msg"]
        for error in errors[:limit]
    ]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


def _location(loc: tuple) -> str:
    text = ""
    for step in loc:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text
