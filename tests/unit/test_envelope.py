"""The envelope rule (workers.envelope) and bounded reasons (workers.errors), without a broker."""

from __future__ import annotations

import unicodedata

import amqp.serialization
from hypothesis import given
from hypothesis import strategies as st

from gridbus.workers import envelope
from gridbus.workers import headers as H
from gridbus.contracts.errors import HIDDEN_CATEGORIES, MAX_REASON_BYTES, ContractViolation, GridbusError, inert, one_line, quote

_text = st.text(max_size=300)
_scalars = st.one_of(
    _text, st.booleans(), st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False), st.none(),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(min_size=1, max_size=20), inner, max_size=4)), max_leaves=12)
_tables = st.dictionaries(st.text(min_size=1, max_size=40), _values, max_size=8)


@given(_tables)
def test_table_size_is_what_py_amqp_writes(table):
    assert envelope.table_size(table) == len(amqp.serialization.dumps("F", [table]))


def hidden(text: str) -> bool:
    return any(unicodedata.category(c) in HIDDEN_CATEGORIES or c in "\n\r\t" for c in text)


@given(st.text())
def test_inert_text_hides_nothing_and_plain_text_is_kept(text):
    shown = inert(text)
    assert not hidden(shown)
    if not hidden(text) and "\\" not in text:
        assert shown == text


def test_escape_sequences_and_bidi_controls_are_shown_as_escapes():
    assert inert("\x1b[2J\x1b]0;pwned\x07 a\u202eb 城东线\n\\") == (
        "\\x1b[2J\\x1b]0;pwned\\x07 a\\u202eb 城东线\\n\\\\"
    )


@given(st.text(max_size=20_000))
def test_every_reason_is_one_bounded_line(text):
    reason = GridbusError(text).reason
    assert len(reason.encode("utf-8", "surrogatepass")) <= MAX_REASON_BYTES
    assert not hidden(reason)


def test_a_cut_reason_says_how_much_was_cut():
    reason = one_line("x" * 10_000)
    kept = reason.partition(" [")[0]
    assert kept == "x" * len(kept)
    assert reason == f"{kept} [... {10_000 - len(kept)} of 10000 bytes cut]"
    assert len(reason.encode()) <= MAX_REASON_BYTES


def test_library_advice_for_programmers_is_left_out():
    assert one_line("Huge input lookup, use XML_PARSE_HUGE option (line 1)") == "Huge input lookup (line 1)"
    assert one_line(
        "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; "
        "use sys.set_int_max_str_digits() to increase the limit"
    ) == "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits"


def test_quote_is_bounded_and_inert():
    assert quote("abc") == "'abc'"
    assert quote(None) == "None"
    assert quote("\x1b" + "v" * 500, 10) == "'\\x1bvvvvvvvvv'... (501 characters)"


def test_publisher_set_gridbus_headers_are_dropped_from_system_exchange_messages():
    headers = {H.ATTEMPT: 99, "X-GridBus-Source-User": "pms", H.SOURCE_USER: "pms", "x-trace": "t1"}
    read = envelope.intake(headers, from_retry=False)
    assert read.headers == {"x-trace": "t1"}
    assert read.attempt == 1 and read.error is None
    assert set(read.dropped) == {H.ATTEMPT, "X-GridBus-Source-User", H.SOURCE_USER}
    assert envelope.names(read.dropped) == "x-gridbus-attempt, X-GridBus-Source-User, x-gridbus-source-user"


def test_gridbus_history_is_read_only_from_the_retry_exchange_and_with_bounds():
    assert envelope.intake({H.ATTEMPT: 3}, from_retry=True).attempt == 3
    for bad in ("abc", 0, -1, 10**9, True, 2.5):
        read = envelope.intake({H.ATTEMPT: bad}, from_retry=True)
        assert isinstance(read.error, ContractViolation), bad
        assert read.attempt == 1
    assert "x-gridbus-attempt must be a whole number from 1 to 1000, got 'abc'" in envelope.intake(
        {H.ATTEMPT: "abc"}, from_retry=True).error.reason


def test_a_wrong_type_delivery_count_is_a_contract_violation_not_an_exception():
    read = envelope.intake({H.DELIVERY_COUNT: "abc"}, from_retry=False)
    assert read.delivery_count == 0 and isinstance(read.error, ContractViolation)
    assert envelope.intake({H.DELIVERY_COUNT: 2}, from_retry=False).delivery_count == 2


def test_oversized_headers_are_refused():
    read = envelope.intake({"x-junk": "h" * 20_000}, from_retry=False, max_header_bytes=16_384)
    assert "application headers of 20016 bytes exceed the limit of 16384 bytes" in read.error.reason


@given(st.dictionaries(st.text(min_size=1, max_size=30), st.text(max_size=40_000), max_size=6))
def test_a_copy_s_headers_always_fit_and_keep_gridbus_s_own(carried):
    own = {H.ERROR_MESSAGE: "x" * MAX_REASON_BYTES, H.ROUTE: "r", H.ATTEMPT: 2}
    fitted = envelope.fit(own, carried, max_bytes=32_768)
    assert envelope.table_size(fitted) <= 32_768
    assert all(fitted[k] == v for k, v in own.items())
    dropped = [k for k in carried if k not in own and k not in fitted]
    if dropped:
        said = fitted[H.HEADERS_DROPPED]
        assert said.endswith("bytes cut]") or all(f"{inert(k)[:60]} (" in said for k in dropped)
