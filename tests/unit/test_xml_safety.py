"""contracts.xml: size, encoding, DTD/entity and well-formedness checks, root and schema checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gridbus.contracts import xml
from gridbus.contracts.errors import ContractViolation

NS = "urn:gridbus:pms:black-map:1"
EXAMPLES = Path(__file__).parents[2] / "contracts" / "examples"
SCHEMA = Path(__file__).parents[2] / "contracts" / "pms" / "black_map_published.v1.xsd"


def refused(body: bytes, max_bytes: int = 1024 * 1024) -> str:
    with pytest.raises(ContractViolation) as caught:
        xml.parse_xml(body, max_bytes=max_bytes)
    return caught.value.reason


def test_plain_utf8_document_parses():
    root = xml.parse_xml('<a xmlns="urn:x"><b>文一变</b></a>'.encode(), max_bytes=1000)
    assert root.findtext("{urn:x}b") == "文一变"


def test_body_over_the_limit_is_refused_before_parsing():
    body = b"<a>" + b"x" * 100 + b"</a>"
    reason = refused(body, max_bytes=50)
    assert "107 bytes" in reason and "limit of 50 bytes" in reason


def test_body_at_the_limit_is_accepted():
    body = b"<a>xx</a>"
    assert xml.parse_xml(body, max_bytes=len(body)).tag == "a"


def test_external_entity_to_a_local_file_is_refused():
    body = (
        b'<?xml version="1.0"?>\n'
        b'<!DOCTYPE r [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
        b"<r>&secret;</r>"
    )
    reason = refused(body)
    assert "DOCTYPE" in reason and "entit" in reason
    assert "root:" not in reason


def test_billion_laughs_is_refused():
    body = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""
    assert "DTD" in refused(body)


@pytest.mark.parametrize(
    "prolog",
    [
        b"<!DOCTYPE r>",  # no entities at all: still refused, a DTD has no place in a contract
        b'<!-- a comment first --><!DOCTYPE r SYSTEM "http://example.com/r.dtd">',
        b'<?xml-stylesheet href="x.xsl"?>\n<!DOCTYPE r PUBLIC "-//X//EN" "r.dtd">',
    ],
)
def test_any_doctype_is_refused(prolog):
    assert "DTD" in refused(b'<?xml version="1.0" encoding="UTF-8"?>' + prolog + b"<r/>")


def test_doctype_lookalike_inside_content_is_not_mistaken_for_one():
    root = xml.parse_xml(b"<r><![CDATA[<!DOCTYPE html>]]></r>", max_bytes=1000)
    assert root.text == "<!DOCTYPE html>"


def test_malformed_xml_names_lxmls_message_and_line():
    reason = refused(b'<?xml version="1.0" encoding="UTF-8"?>\n<a>\n  <b>\n</a>')
    assert reason.startswith("malformed XML:")
    assert "mismatch" in reason and "(line 4)" in reason


def test_line_numbers_survive_a_multiline_declaration():
    reason = refused(b'<?xml version="1.0"\n   encoding="GBK"?>\n<a>\n<b></a>')
    assert "(line 4)" in reason


def test_gbk_declared_and_gbk_bytes_is_accepted_with_chinese_intact():
    body = '<?xml version="1.0" encoding="GBK"?><a>杭州110kV文一变</a>'.encode("gbk")
    assert xml.parse_xml(body, max_bytes=1000).text == "杭州110kV文一变"


@pytest.mark.parametrize("label,codec", [("gb2312", "gb2312"), ("GB18030", "gb18030"), ("utf-8", "utf-8")])
def test_other_supported_encodings(label, codec):
    body = f'<?xml version="1.0" encoding="{label}"?><a>王建国</a>'.encode(codec)
    assert xml.parse_xml(body, max_bytes=1000).text == "王建国"


def test_gbk_bytes_declared_utf8_are_refused():
    body = '<?xml version="1.0" encoding="UTF-8"?><a>文一变</a>'.encode("gbk")
    reason = refused(body)
    assert "declared UTF-8 but bytes are not valid UTF-8" in reason


def test_gbk_bytes_without_declaration_are_refused_as_not_utf8():
    reason = refused("<a>文一变</a>".encode("gbk"))
    assert "no encoding declared" in reason and "not valid UTF-8" in reason


def test_gbk_only_characters_declared_gb2312_are_refused():
    # 镕 is in GBK but not in GB2312: the declaration is a lie.
    body = '<?xml version="1.0" encoding="GB2312"?><a>朱镕</a>'.encode("gbk")
    assert "declared GB2312 but bytes are not valid GB2312" in refused(body)


@pytest.mark.parametrize("label", ["ISO-8859-1", "Big5", "US-ASCII", "UTF-16"])
def test_unsupported_declared_encodings_are_refused(label):
    body = f'<?xml version="1.0" encoding="{label}"?><a/>'.encode("ascii")
    reason = refused(body)
    assert "unsupported encoding" in reason and label.upper() in reason


def test_utf16_byte_order_mark_is_refused():
    body = '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16")
    assert "unsupported encoding UTF-16" in refused(body)


def test_utf8_byte_order_mark_is_accepted():
    assert xml.parse_xml(b"\xef\xbb\xbf<a>x</a>", max_bytes=100).text == "x"


def test_malformed_declaration_is_refused():
    assert "malformed XML declaration" in refused(b'<?xml version="2.0"?><a/>')


def test_wrong_root_namespace_names_expected_and_actual():
    root = xml.parse_xml(b'<BlackMapPublished xmlns="urn:gridbus:pms:black-map:2"/>', max_bytes=1000)
    with pytest.raises(ContractViolation) as caught:
        xml.expect_root(root, NS, "BlackMapPublished")
    assert caught.value.reason == (
        "expected {urn:gridbus:pms:black-map:1}BlackMapPublished version 1, "
        "got '{urn:gridbus:pms:black-map:2}BlackMapPublished'"
    )


def test_schema_errors_list_line_and_element_path():
    body = (EXAMPLES / "pms.BlackMapPublished.xml").read_bytes().replace(
        b"<Kind>Breaker</Kind>", b"<Kind>Teapot</Kind>"
    )
    root = xml.parse_xml(body, max_bytes=1024 * 1024)
    with pytest.raises(ContractViolation) as caught:
        xml.validate(root, SCHEMA)
    reason = caught.value.reason
    assert "black_map_published.v1.xsd" in reason
    assert "line 13" in reason
    assert "/BlackMapPublished/Equipment/Item[1]/Kind" in reason
    assert "Teapot" in reason


def test_schema_is_loaded_once():
    xml.validate(xml.parse_xml((EXAMPLES / "pms.BlackMapPublished.xml").read_bytes()), SCHEMA)
    assert xml.load_schema(SCHEMA) is xml.load_schema(SCHEMA)


def test_the_parser_is_configured_strictly():
    # lxml offers no public getter for these options; the module's parser object is what we own.
    parser = xml._PARSER
    assert isinstance(parser, etree.XMLParser)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(b"<a>&undefined;</a>", parser)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_never_raise_anything_but_contract_violation(body):
    try:
        xml.parse_xml(body, max_bytes=300)
    except ContractViolation as exc:
        assert exc.reason


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_as_gbk_or_utf8_never_raises_anything_but_contract_violation(text):
    for label, codec in (("UTF-8", "utf-8"), ("GBK", "gb18030")):
        body = f'<?xml version="1.0" encoding="{label}"?><a>{text}</a>'.encode(codec, errors="replace")
        try:
            xml.parse_xml(body, max_bytes=10_000)
        except ContractViolation:
            pass


def test_schema_errors_never_quote_personal_data(tmp_path):
    schema = tmp_path / "person.xsd"
    schema.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" xmlns="urn:t" '
        'elementFormDefault="qualified"><xs:element name="P"><xs:complexType><xs:sequence>'
        '<xs:element name="LegalRepresentative"><xs:simpleType><xs:restriction base="xs:string">'
        '<xs:pattern value="[A-Z]+"/></xs:restriction></xs:simpleType></xs:element>'
        '<xs:element name="Code"><xs:simpleType><xs:restriction base="xs:string">'
        '<xs:pattern value="[A-Z]+"/></xs:restriction></xs:simpleType></xs:element>'
        "</xs:sequence></xs:complexType></xs:element></xs:schema>",
        encoding="utf-8",
    )
    root = xml.parse_xml('<P xmlns="urn:t"><LegalRepresentative>陈志明</LegalRepresentative><Code>abc</Code></P>'.encode())
    with pytest.raises(ContractViolation) as caught:
        xml.validate(root, schema)
    reason = caught.value.reason
    assert "陈志明" not in reason and "'***'" in reason and "LegalRepresentative" in reason
    assert "'abc'" in reason  # values of other elements help the operator and stay
