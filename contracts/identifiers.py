"""The unified social credit code (统一社会信用代码) check, as sales-company archives need it.

A unified social credit code (GB 32100-2015) is 18 characters from ``CREDIT_CODE_CHARSET``
(digits and capital letters without I, O, S, V, Z); a character's value is its index there.

- position 1: registration authority, position 2: organisation category (not checked here);
- positions 3-8: administrative region code, six digits;
- positions 9-17: the organisation code (GB 11714): an eight-character body and its own check
  character at position 17 (weights 3, 7, 9, 10, 5, 8, 4, 2; ``11 - (sum mod 11)``,
  10 is written ``X`` and 11 is written ``0``). GB 11714 gives letters their place in the Latin
  alphabet (A = 10 ... Z = 35), which differs from the credit-code value from J onwards;
- position 18: the GB 32100 check character over positions 1-17 (weights ``3**i mod 31``;
  ``31 - (sum mod 31)``, 31 is written ``0``).

Because every GB 32100 weight is coprime to 31 and values lie in 0..30, changing any single
character of a valid code always breaks the position-18 check, so no one-character slip passes.

``credit_code_problems`` lists every problem found, in position order, each with a stable
machine-readable ``code`` for feedback messages and an English ``message`` for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = [
    "CREDIT_CODE_CHARSET",
    "SALES_COMPANY_PREFIXES",
    "CodeProblem",
    "complete_credit_code",
    "credit_code_check_character",
    "credit_code_problems",
    "customer_id_problems",
    "is_valid_credit_code",
    "is_valid_resident_id",
    "organisation_check_character",
    "resident_id_check_character",
    "resident_id_problems",
    "sales_company_code_problems",
]

#: The registration authority and organisation category (positions 1-2) a sales company's code
#: may start with: ``9`` market regulation (工商/市场监管) and ``1`` enterprise (企业). A sales
#: company (售电公司) must be an enterprise legal person registered with market regulation
#: (售电公司管理办法, 发改体改规〔2021〕1595号); ``92`` (individual business 个体工商户), ``93``
#: (farmers' cooperative 农民专业合作社) and the codes of other authorities (``1x`` public
#: institutions, ``5x`` social organisations, ...) cannot trade as one.
SALES_COMPANY_PREFIXES = ("91",)

#: The 31 characters a credit code may use; a character's value is its index.
CREDIT_CODE_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"

#: Length of a unified social credit code.
CREDIT_CODE_LENGTH = 18

_CREDIT_VALUE = {ch: value for value, ch in enumerate(CREDIT_CODE_CHARSET)}
#: GB 32100 weights for positions 1-17 (3**i mod 31).
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

#: GB 11714 values: digits, then the Latin alphabet A = 10 ... Z = 35.
_ORGANISATION_VALUE = {ch: value for value, ch in enumerate("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")}
#: GB 11714 weights for the eight characters of the organisation code body.
_ORGANISATION_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

_DIGITS = frozenset("0123456789")
_REGION = range(3, 9)  # 1-based positions of the region code
_ORGANISATION_BODY = range(9, 17)  # 1-based positions checked by position 17


@dataclass(frozen=True)
class CodeProblem:
    """One reason a credit code is refused.

    ``code`` is one of "missing", "length", "character", "region", "organisation-check",
    "check-character"; ``message`` says which position or character and what was expected.
    """

    code: str
    message: str


def credit_code_check_character(first17: str) -> str:
    """The GB 32100 check character (position 18) for 17 characters of the charset.

    Raises ``ValueError`` when ``first17`` is not 17 characters of ``CREDIT_CODE_CHARSET``.
    """
    if len(first17) != CREDIT_CODE_LENGTH - 1 or any(ch not in _CREDIT_VALUE for ch in first17):
        raise ValueError(f"17 characters of {CREDIT_CODE_CHARSET} expected, got {first17!r}")
    total = sum(_CREDIT_VALUE[ch] * weight for ch, weight in zip(first17, _CREDIT_WEIGHTS))
    return CREDIT_CODE_CHARSET[(31 - total % 31) % 31]


def organisation_check_character(eight: str) -> str:
    """The GB 11714 check character (credit-code position 17) for the eight-character body.

    The body may use digits and capital letters A-Z; the result is a digit or ``X``.
    Raises ``ValueError`` for anything else.
    """
    if len(eight) != 8 or any(ch not in _ORGANISATION_VALUE for ch in eight):
        raise ValueError(f"8 digits or capital letters expected, got {eight!r}")
    total = sum(_ORGANISATION_VALUE[ch] * weight for ch, weight in zip(eight, _ORGANISATION_WEIGHTS))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def complete_credit_code(first16: str) -> str:
    """The valid code that starts with ``first16``: the organisation check (position 17) and the
    check character (position 18) appended. ``ValueError`` as the two checks raise it."""
    first17 = first16 + organisation_check_character(first16[8:16])
    return first17 + credit_code_check_character(first17)


def credit_code_problems(code: str | None) -> tuple[CodeProblem, ...]:
    """Every problem of ``code`` as a unified social credit code, in position order; ``()`` if valid.

    A missing code or one of the wrong length is reported alone, since the other checks need
    all 18 characters. The code is taken as given: no trimming, no case folding.
    """
    if not code:
        return (CodeProblem("missing", "no unified social credit code given"),)
    if len(code) != CREDIT_CODE_LENGTH:
        return (CodeProblem("length", f"{CREDIT_CODE_LENGTH} characters expected, got {len(code)}"),)

    problems: list[CodeProblem] = []
    bad_positions: set[int] = set()
    for position, ch in enumerate(code, start=1):
        if ch not in _CREDIT_VALUE:
            bad_positions.add(position)
            problems.append(CodeProblem("character", _character_message(position, ch)))
        elif position in _REGION and ch not in _DIGITS:
            problems.append(CodeProblem(
                "region", f"position {position} is part of the region code (positions 3-8) and must be "
                          f"a digit, got {ch!r}"))
        elif position == 17 and bad_positions.isdisjoint(_ORGANISATION_BODY):
            expected = organisation_check_character(code[8:16])
            if ch != expected:
                problems.append(CodeProblem(
                    "organisation-check", f"position 17 must be the organisation code check character "
                                          f"{expected!r} for positions 9-16 {code[8:16]!r}, got {ch!r}"))
        elif position == 18 and not bad_positions:
            expected = credit_code_check_character(code[:17])
            if ch != expected:
                problems.append(CodeProblem(
                    "check-character", f"position 18 must be the check character {expected!r} "
                                       f"for positions 1-17, got {ch!r}"))
    return tuple(problems)


def is_valid_credit_code(code: str | None) -> bool:
    """True when ``code`` is a well-formed unified social credit code with both checks right."""
    return not credit_code_problems(code)


def _character_message(position: int, ch: str) -> str:
    hint = ""
    if ch.upper() in _CREDIT_VALUE:
        hint = f" (lowercase is not accepted: use {ch.upper()!r})"
    elif ch in "IOSVZ":
        hint = " (I, O, S, V and Z are never used)"
    return f"position {position} must be one of {CREDIT_CODE_CHARSET}, got {ch!r}{hint}"


def sales_company_code_problems(code: str | None) -> tuple[CodeProblem, ...]:
    """``credit_code_problems``, then ``"not-enterprise"`` when a code whose first two characters
    are readable does not start with one of ``SALES_COMPANY_PREFIXES``."""
    problems = credit_code_problems(code)
    if code and len(code) == CREDIT_CODE_LENGTH and code[:2] not in SALES_COMPANY_PREFIXES:
        problems += (CodeProblem(
            "not-enterprise", f"positions 1-2 are {code[:2]!r}; a sales company is an enterprise registered with "
                              f"market regulation, so its code starts with {' or '.join(SALES_COMPANY_PREFIXES)}"),)
    return problems


# -- resident identity numbers (GB 11643-1999) -------------------------------------------------------------

#: GB 11643 weights for the first 17 digits (2**(18 - i) mod 11).
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
#: (sum mod 11) -> the check character.
_RESIDENT_CHECK = "10X98765432"


def resident_id_check_character(first17: str) -> str:
    """The GB 11643 check character (position 18) for 17 digits; ``ValueError`` for anything else."""
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise ValueError(f"17 digits expected, got {first17!r}")
    return _RESIDENT_CHECK[sum(int(d) * w for d, w in zip(first17, _RESIDENT_WEIGHTS)) % 11]


def resident_id_problems(number: str | None) -> tuple[CodeProblem, ...]:
    """Every problem of ``number`` as an 18-character resident identity number (居民身份证号码):
    six digits of region, the birth date ``YYYYMMDD``, three digits of sequence, and the check
    character (a digit or ``X``). The old 15-digit numbers are not accepted."""
    if not number:
        return (CodeProblem("missing", "no identity number given"),)
    if len(number) != 18:
        return (CodeProblem("length", f"18 characters expected, got {len(number)}"),)
    if not (number[:17].isascii() and number[:17].isdigit()) or number[17] not in "0123456789X":
        return (CodeProblem("character", "positions 1-17 must be digits and position 18 a digit or 'X'"),)
    problems = []
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        if born.year < 1900:
            raise ValueError
    except ValueError:
        problems.append(CodeProblem("birth-date", "positions 7-14 are not a birth date (YYYYMMDD)"))
    if number[17] != resident_id_check_character(number[:17]):
        # no digits quoted: the number is personal data
        problems.append(
            CodeProblem("check-character", "position 18 is not the GB 11643 check character of positions 1-17")
        )
    return tuple(problems)


def is_valid_resident_id(number: str | None) -> bool:
    return not resident_id_problems(number)


def customer_id_problems(number: str) -> str | None:
    """Why ``number`` is neither a customer's resident identity number nor a unified social credit
    code (an organisation customer), or None when it is one of them. The problems told are those
    of the rule its shape suggests: a resident ID's when it is 17 digits and a digit or X (a
    credit code can be all digits too, so both rules are tried), a credit code's otherwise."""
    if is_valid_resident_id(number) or is_valid_credit_code(number):
        return None
    first17 = number[:17]
    looks_resident = len(number) == 18 and first17.isascii() and first17.isdigit() and number[17] in "0123456789X"
    problems = resident_id_problems(number) if looks_resident else credit_code_problems(number)
    rule = "a resident identity number (GB 11643)" if looks_resident else "a unified social credit code (GB 32100)"
    return f"is neither a valid resident identity number nor a valid credit code; as {rule}: " + "; ".join(
        p.message for p in problems)
