"""Unified social credit codes: valid codes pass, every one-character slip and every Fig. 9 code fails.

The check characters used to build valid codes come from a reference written here from the
standards' text (GB 32100-2015 weights 3**i mod 31; GB 11714 values A = 10 ... Z = 35), not
from the code under test.
"""

from __future__ import annotations

import string
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from gridbus.contracts.identifiers import (
    CREDIT_CODE_CHARSET,
    CodeProblem,
    complete_credit_code,
    credit_code_check_character,
    credit_code_problems,
    is_valid_credit_code,
    organisation_check_character,
)
from tests.support.fig9 import ARCHIVE_NAMESPACE, FIG9_ROWS, archive_xml

REAL_CODES = ("91350200776049653A", "9135021359498494XQ")


def reference_organisation_check(body: str) -> str:
    total = sum(int(ch, 36) * w for ch, w in zip(body, (3, 7, 9, 10, 5, 8, 4, 2), strict=True))
    return {10: "X", 11: "0"}.get(11 - total % 11, str(11 - total % 11))


def reference_credit_check(first17: str) -> str:
    total = sum(CREDIT_CODE_CHARSET.index(ch) * pow(3, i, 31) for i, ch in enumerate(first17))
    return CREDIT_CODE_CHARSET[-total % 31]


charset_chars = st.sampled_from(CREDIT_CODE_CHARSET)


@st.composite
def valid_codes(draw) -> str:
    registration, category = draw(charset_chars), draw(charset_chars)
    region = draw(st.text(alphabet=string.digits, min_size=6, max_size=6))
    body = draw(st.text(alphabet=CREDIT_CODE_CHARSET, min_size=8, max_size=8))
    first17 = registration + category + region + body + reference_organisation_check(body)
    return first17 + reference_credit_check(first17)


def problem_codes(code: str | None) -> tuple[str, ...]:
    return tuple(p.code for p in credit_code_problems(code))


# --- valid codes ---------------------------------------------------------------------------

@pytest.mark.parametrize("code", REAL_CODES)
def test_real_codes_pass(code):
    assert credit_code_problems(code) == ()
    assert is_valid_credit_code(code)
    assert credit_code_check_character(code[:17]) == code[17]
    assert organisation_check_character(code[8:16]) == code[16]


def test_the_reference_agrees_with_the_real_codes():
    for code in REAL_CODES:
        assert reference_organisation_check(code[8:16]) == code[16]
        assert reference_credit_check(code[:17]) == code[17]


@given(valid_codes())
def test_every_generated_valid_code_passes(code):
    assert credit_code_problems(code) == ()
    assert is_valid_credit_code(code)


@given(valid_codes())
def test_check_characters_match_the_reference(code):
    assert organisation_check_character(code[8:16]) == code[16]
    assert credit_code_check_character(code[:17]) == code[17]


@pytest.mark.parametrize(("body", "check"), [
    ("77604965", "3"),
    ("59498494", "X"),  # 11 - (sum mod 11) = 10
    ("00000000", "0"),  # 11 - 0 = 11
    ("ABCDEFGH", "5"),  # 30+77+108+130+70+120+64+34 = 633, 633 mod 11 = 6
    ("J0000000", "9"),  # GB 11714 J = 19 (not its credit-code value 18): 57 mod 11 = 2
])
def test_organisation_check_character(body, check):
    assert organisation_check_character(body) == check


@pytest.mark.parametrize("code", [
    "91350200J00000009Y",  # a body letter past H, where the two value tables differ
    "91350200000000000N",  # organisation check 11, written 0
])
def test_edge_cases_of_valid_codes(code):
    assert credit_code_problems(code) == ()


@pytest.mark.parametrize("bad", [
    "", "9135020077604965", "913502007760496530", "91350200776049653a", "I1350200776049653"])
def test_credit_code_check_character_refuses_anything_but_17_charset_characters(bad):
    with pytest.raises(ValueError):
        credit_code_check_character(bad)


@pytest.mark.parametrize("bad", ["", "7760496", "776049653", "7760496a", "7760496-"])
def test_organisation_check_character_refuses_anything_but_8_digits_or_capitals(bad):
    with pytest.raises(ValueError):
        organisation_check_character(bad)


# --- single substitutions ------------------------------------------------------------------

def test_the_check_weights_catch_every_single_substitution():
    """Why one changed character always breaks position 18: w * d is never 0 mod 31."""
    weights = [pow(3, i, 31) for i in range(17)]
    assert all(w * d % 31 for w in weights for d in range(1, 31))


OUTSIDE_CHARSET = "IOSVZaiy-. ９"


@given(valid_codes(), st.integers(min_value=1, max_value=18), st.data())
def test_any_single_substitution_fails(code, position, data):
    original = code[position - 1]
    replacement = data.draw(st.sampled_from(
        [ch for ch in CREDIT_CODE_CHARSET + OUTSIDE_CHARSET if ch != original]), label="replacement")
    changed = code[:position - 1] + replacement + code[position:]
    problems = credit_code_problems(changed)

    codes = [p.code for p in problems]
    assert not is_valid_credit_code(changed)
    if replacement in CREDIT_CODE_CHARSET:
        assert codes[-1] == "check-character"
        if position in range(3, 9) and not replacement.isdigit():
            assert codes[0] == "region"
        if position == 17:
            assert "organisation-check" in codes
    else:
        assert codes == ["character"]
        assert f"position {position} " in problems[0].message


# --- known-bad examples --------------------------------------------------------------------

@pytest.mark.parametrize(("code", "expected"), [
    (None, ("missing",)),
    ("", ("missing",)),
    ("9135020077604965", ("length",)),
    ("91350200776049653A0", ("length",)),
    (" 91350200776049653A", ("length",)),
    ("91350200776049653a", ("character",)),
    ("9135021359498494xQ", ("character",)),
    ("I1350200776049653A", ("character",)),
    ("91350200776O49653A", ("character",)),
    ("9a3502007I6049653A", ("character", "character")),
    ("91A502007760496539", ("region",)),
    ("91A50200776049653A", ("region", "check-character")),
    ("91350200776049654D", ("organisation-check",)),
    ("9135020077604965XT", ("organisation-check",)),
    ("91350200776049654A", ("organisation-check", "check-character")),
    ("91350200776049653B", ("check-character",)),
    ("913502007760496530", ("check-character",)),
])
def test_known_bad_codes(code, expected):
    assert problem_codes(code) == expected
    assert not is_valid_credit_code(code)


def test_messages_name_the_position_and_what_was_expected():
    assert credit_code_problems("9135020077604965")[0].message == "18 characters expected, got 16"
    (lowercase,) = credit_code_problems("91350200776049653a")
    assert "position 18" in lowercase.message and "'A'" in lowercase.message
    first, second = credit_code_problems("9a3502007I6049653A")
    assert "position 2 " in first.message and "position 10 " in second.message
    (organisation,) = credit_code_problems("91350200776049654D")
    assert "position 17" in organisation.message and "'3'" in organisation.message
    (check,) = credit_code_problems("91350200776049653B")
    assert "position 18" in check.message and "'A'" in check.message and "'B'" in check.message


# --- Fig. 9 --------------------------------------------------------------------------------

# Worked out by hand from the printed codes. Rows 15 and 17 have 18 characters; their
# organisation body 33105080 needs check 3 (3*3+3*7+1*9+5*5+8*4 = 96, 11 - 96 mod 11 = 3),
# and position 18 should be E (row 15) and P (row 17), not 0.
FIG9_EXPECTED = {
    1: ("length", 15), 2: ("length", 15), 3: ("length", 15), 4: ("length", 16),
    5: ("length", 15), 6: ("length", 15), 7: ("length", 16), 8: ("length", 15),
    9: ("length", 15), 10: ("length", 16), 11: ("length", 17), 12: ("length", 17),
    13: ("length", 15), 14: ("length", 17),
    15: ("organisation-check", "check-character"),
    16: ("length", 17),
    17: ("organisation-check", "check-character"),
    18: ("length", 19), 19: ("length", 20), 20: ("length", 21),
}


@pytest.mark.parametrize("row", FIG9_ROWS, ids=lambda r: f"row{r.row:02d}")
def test_every_fig9_code_fails_for_the_right_reason(row):
    expected = FIG9_EXPECTED[row.row]
    problems = credit_code_problems(row.credit_code)
    if expected[0] == "length":
        assert problems == (CodeProblem("length", f"18 characters expected, got {expected[1]}"),)
    else:
        assert tuple(p.code for p in problems) == expected


def test_fig9_rows_18_characters_long_fail_both_checks_as_worked_out():
    row15, row17 = FIG9_ROWS[14], FIG9_ROWS[16]
    assert (row15.credit_code, row17.credit_code) == ("P42040113310508010", "P42040113310508040")
    for row, check in ((row15, "E"), (row17, "P")):
        organisation, credit = credit_code_problems(row.credit_code)
        assert "'3'" in organisation.message
        assert f"{check!r}" in credit.message


def test_fig9_transcription():
    assert len(FIG9_ROWS) == 20 and [r.row for r in FIG9_ROWS] == list(range(1, 21))
    assert {r.legal_representative for r in FIG9_ROWS} == {"无"}
    second = FIG9_ROWS[1]
    assert (second.name, second.short_name, second.parent_company) == (
        "太原市国电晋能售电有限公司", "国电(山西)售电有限公司", "国电晋能售电有限公司")
    twelfth = FIG9_ROWS[11]
    assert (twelfth.shareholders, twelfth.established_on, twelfth.effective_date) == ("贵州", "2011-12-02", "2016-05-15")
    assert FIG9_ROWS[7].registered_capital_10k_yuan == "500"


def test_fig9_archive_xml():
    row = FIG9_ROWS[0]
    root = etree.fromstring(archive_xml(row))
    ns = f"{{{ARCHIVE_NAMESPACE}}}"
    assert root.tag == f"{ns}SalesCompanyArchivePushed"
    assert [child.tag.removeprefix(ns) for child in root] == [
        "ArchiveId", "ArchiveRevision", "PushedAt", "CreditCode", "Status", "Name", "ShortName", "Nature",
        "Address", "RegistrationPlace", "RegisteredCapital", "Shareholders", "EstablishedOn", "EffectiveDate"]
    assert root.findtext(f"{ns}ArchiveId") == "FIG9-01"
    assert root.findtext(f"{ns}Shareholders/{ns}Shareholder/{ns}Name") == "国电"
    assert root.findtext(f"{ns}Name") == "太原市国电晋能售电有限公司"


def test_fig9_archive_xml_escapes_and_keeps_a_given_legal_representative():
    row = replace(FIG9_ROWS[0], legal_representative="张三 <&>", address="A & B <路>")
    body = archive_xml(row, archive_id="X-1", revision=3, status="deregistered")
    assert body.startswith(b"<?xml")
    root = etree.fromstring(body)
    ns = f"{{{ARCHIVE_NAMESPACE}}}"
    assert [child.tag.removeprefix(ns) for child in root][-3:] == [
        "EstablishedOn", "LegalRepresentative", "EffectiveDate"]
    assert root.findtext(f"{ns}LegalRepresentative") == "张三 <&>"
    assert root.findtext(f"{ns}Address") == "A & B <路>"
    assert (root.findtext(f"{ns}ArchiveId"), root.findtext(f"{ns}ArchiveRevision"),
            root.findtext(f"{ns}Status")) == ("X-1", "3", "deregistered")


def test_completing_the_first_16_characters_gives_the_real_codes():
    assert complete_credit_code("9135020077604965") == "91350200776049653A"
    assert complete_credit_code("9135021359498494") == "9135021359498494XQ"


# -- sales companies are enterprises; customers are people or organisations ---------------------------


def test_a_sales_company_code_must_be_an_enterprises():
    from gridbus.contracts.identifiers import sales_company_code_problems

    assert sales_company_code_problems("91350200776049653A") == ()
    for first16 in ("9235020077604965", "9335020077604965", "1135020077604965", "5135020077604965"):
        code = complete_credit_code(first16)
        assert credit_code_problems(code) == ()  # a valid code, but not a company's
        assert [p.code for p in sales_company_code_problems(code)] == ["not-enterprise"]
        assert "starts with 91" in sales_company_code_problems(code)[0].message
    # a code too short to read is reported for its length alone
    assert [p.code for p in sales_company_code_problems("P42040113310410")] == ["length"]


def test_resident_identity_numbers_carry_the_gb11643_check():
    from gridbus.contracts.identifiers import resident_id_check_character, resident_id_problems

    assert resident_id_check_character("11010519491231002") == "X"  # the standard's own example
    assert resident_id_problems("11010519491231002X") == ()
    assert [p.code for p in resident_id_problems("110105194912310021")] == ["check-character"]
    assert "birth-date" in [p.code for p in resident_id_problems("110105194913310025")]  # month 13
    assert [p.code for p in resident_id_problems("110105491231002")] == ["length"]  # 15-digit numbers are old
    assert [p.code for p in resident_id_problems("11010519491231002x")] == ["character"]
    for bad in ("110105194912310021", "110105194913310025"):
        assert all(bad[6:14] not in p.message for p in resident_id_problems(bad))  # personal data not quoted


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_every_completed_resident_number_with_a_real_birth_date_passes(digits):
    from gridbus.contracts.identifiers import is_valid_resident_id, resident_id_check_character

    number = digits[:6] + "19900228" + digits[14:]
    assert is_valid_resident_id(number + resident_id_check_character(number))


def test_a_customer_id_number_is_a_resident_id_or_a_credit_code():
    from gridbus.contracts.identifiers import customer_id_problems

    assert customer_id_problems("11010519491231002X") is None
    assert customer_id_problems("91330106MA2KE8Q100") is None
    assert customer_id_problems(complete_credit_code("5135020077604965")) is None  # any organisation's valid code
    why = customer_id_problems("91330106MA2KE8Q15C")  # the old example: passes neither
    assert why.startswith("is neither") and "credit code" in why
    assert "resident identity number (GB 11643)" in customer_id_problems("110105194912310021")
