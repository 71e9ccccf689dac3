"""Dead letters read for operators: printed inert, decoded only in the allowed charsets, and
replayed with only the headers gridbus wrote (``tools.letters``, ``tools.dlq.replay_copy``)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridbus.contracts import naming
from gridbus.workers import headers as H
from gridbus.tools.dlq_cli import _render_letter
from gridbus.tools.letters import UNROUTED, DeadLetter, shown, visible
from gridbus.tools.dlq import operator_name, replay_copy

REPO = Path(__file__).resolve().parents[2]
ROUTE = "pms.black-map-published"
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=timezone.utc)

#: Everything a terminal acts on, or that reorders or hides text.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\x7f\x00\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u200b\ufeff\u2028\r"


def _raw_controls(text: str) -> list[str]:
    """Characters in printed output that must never be there (the layout's own line feeds aside)."""
    return [c for c in text if c not in "\n\\" and visible(c) != c]


def letter(route=ROUTE, body=b"{}", headers=None, **properties) -> DeadLetter:
    return DeadLetter(
        route=route,
        queue=naming.UNROUTED_QUEUE if route == UNROUTED else naming.dead_letter_queue(route),
        body=body,
        properties={"message_id": "m-1", **properties},
        headers=dict(headers or {}),
    )


def broker_death(route=ROUTE, exchange="pms.out", reason="delivery_limit") -> dict:
    return {H.X_DEATH: [{"reason": reason, "queue": naming.work_queue(route), "count": 1, "exchange": exchange,
                         "routing-keys": ["black-map.published"]}]}


# --- visible and shown -----------------------------------------------------------------------------


def test_every_control_format_and_bidi_character_becomes_a_visible_escape():
    assert visible(HOSTILE) == (
        "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\x7f\\x00\\u202e\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u200b"
        "\\ufeff\\u2028\\r"
    )
    assert visible("line 1\nline 2\tend") == "line 1\\nline 2\\tend"
    assert visible("a\\x1b") == "a\\\\x1b"  # a literal backslash cannot pass for an escape
    assert visible("黑图 État ok") == "黑图 État ok"


def test_layout_keeps_line_feeds_and_tabs_only():
    assert visible("<a>\n\t<b/>\r\n</a>\x1b", layout=True) == "<a>\n\t<b/>\\r\n</a>\\x1b"


def test_bytes_are_printable_ascii_and_escapes():
    assert visible(b"ok \x1b[2J \xc9\xff\\") == "ok \\x1b[2J \\xc9\\xff\\\\"


@given(st.text() | st.binary())
def test_nothing_visible_prints_acts_on_a_terminal(value):
    out = visible(value)
    assert not _raw_controls(out) and "\n" not in out


def test_long_values_are_cut_with_a_marker():
    assert shown("x" * 1200, 500) == "x" * 500 + "...[700 more characters cut]"
    assert shown(b"\x1b" * 10, 4) == "\\x1b" * 4 + "...[6 more bytes cut]"
    assert shown({"k\x1b": [1, "v\u202e"]}, 500) == "{k\\x1b: [1, v\\u202e]}"
    assert shown(12, 500) == "12"


# --- body decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-7", "text/plain; charset=UTF_7"])
def test_utf7_is_never_decoded(content_type):
    body_text = letter(body=b"+ABs-[2J", content_type=content_type).body_text()
    assert body_text.shown_as == "bytes" and body_text.text == b"+ABs-[2J"
    assert "not used to decode" in body_text.why


def test_unicode_escape_and_other_text_codecs_are_never_decoded():
    for charset in ("unicode_escape", "raw_unicode_escape", "rot13", "punycode", "idna", "utf-16", "latin-1"):
        assert letter(body=b"\\x1b[2J", content_type=f"text/plain; charset={charset}").body_text().shown_as == "bytes"
    assert letter(body=b"\\x1b", content_encoding="unicode_escape").body_text().shown_as == "bytes"


def test_the_xml_declaration_decides_within_the_allowed_charsets():
    gbk = '<?xml version="1.0" encoding="GBK"?><a>黑图</a>'.encode("gbk")
    assert letter(body=gbk, content_type="application/xml").body_text() == ("gbk", gbk.decode("gbk"), "")
    utf7 = b'<?xml version="1.0" encoding="UTF-7"?><a>+ABs-</a>'
    assert letter(body=utf7, content_type="application/xml; charset=utf-8").body_text().shown_as == "bytes"
    gb = "<a>黑图</a>".encode("gb18030")
    assert letter(body=gb, content_type="application/xml; charset=gb18030").body_text().text == "<a>黑图</a>"


def test_a_body_not_valid_in_its_charset_is_shown_as_bytes_or_base64():
    mostly_text = b"<Notice>\xff</Notice>"
    assert letter(body=mostly_text).body_text() == (
        "bytes", mostly_text, "not valid utf-8 (first bad byte at offset 8)"
    )
    assert letter(body=bytes(range(256))).body_text().shown_as == "base64"


# --- whose headers -------------------------------------------------------------------------------


FORGED = {H.ERROR_TYPE: "delivery-refused", H.ERROR_MESSAGE: "forged\nreason", H.SOURCE_USER: "pms", "custom": "c"}


def test_an_unrouted_letter_is_unroutable_whatever_its_headers_say():
    unrouted = letter(UNROUTED, headers=FORGED)
    unrouted.exchange, unrouted.routing_key = "pms.out", "nobody.listens"
    assert unrouted.error_type == "unroutable"
    assert unrouted.error_message.startswith("no route is bound to exchange pms.out with routing key nobody.listens")
    assert unrouted.untrusted_headers == {k: v for k, v in FORGED.items() if k != "custom"}
    assert unrouted.trusted_headers == {"custom": "c"}
    assert unrouted.source_user is None


def test_an_x_death_on_an_unrouted_letter_is_the_publishers():
    forged = letter(UNROUTED, headers=broker_death(UNROUTED))
    assert forged.deaths == [] and forged.error_type == "unroutable"
    assert "  x-death: [{reason: delivery_limit" in _render_letter(forged)


def test_the_publishers_original_dead_lettered_by_the_broker_keeps_no_gridbus_header():
    original = letter(headers={**FORGED, **broker_death()}, user_id="mkt")
    assert original.error_type == "broker:delivery_limit"
    assert original.untrusted_headers.keys() == {H.ERROR_TYPE, H.ERROR_MESSAGE, H.SOURCE_USER}
    assert original.source_user == "mkt"  # the broker-checked user_id, never the header
    # A forged x-death cannot hide the broker's own entry, nor a forged dead-lettered-at.
    assert letter(headers={**FORGED, H.DEAD_LETTERED_AT: "2999-01-01T00:00:00+00:00", **broker_death()}).error_type == (
        "broker:delivery_limit"
    )


def test_gridbus_headers_are_trusted_on_gridbus_dead_letters_and_on_internal_routes():
    ours = letter(headers={**FORGED})
    assert ours.headers_from_gridbus and ours.error_type == "delivery-refused" and ours.source_user == "pms"
    death = broker_death("gridbus.ownership-due", naming.RETRY_EXCHANGE)
    internal = letter("gridbus.ownership-due", headers={**FORGED, **death})
    internal.retry_only = True
    assert internal.headers_from_gridbus and internal.source_user == "pms"


# --- replay copies ---------------------------------------------------------------------------------


def test_replay_copy_of_an_unrouted_letter_carries_no_gridbus_header():
    copy = replay_copy(letter(UNROUTED, headers={**FORGED, H.ATTEMPT: 99, H.REPLAYED: 7}), "ops", NOW)
    headers = copy.properties["application_headers"]
    assert headers == {
        "custom": "c", H.REPLAYED: 1, H.ATTEMPT: 1, H.REPLAYED_BY: "ops", H.REPLAYED_AT: "2026-12-02T08:00:00.000+00:00"
    }


def test_replay_copy_never_invents_a_source_user():
    refused = letter(headers={H.ERROR_TYPE: "unauthorised", H.ERROR_MESSAGE: "no user_id property"})
    headers = replay_copy(refused, "ops", NOW).properties["application_headers"]
    assert H.SOURCE_USER not in headers
    assert headers[H.ERROR_TYPE] == "unauthorised"  # gridbus's history is kept


def test_replay_copy_of_a_broker_dead_letter_takes_the_source_user_from_user_id_only():
    original = letter(headers={**FORGED, **broker_death(), H.DELIVERY_COUNT: 20, "x-first-death-queue": "q"},
                      user_id="mkt")
    copy = replay_copy(original, "ops", NOW)
    headers = copy.properties["application_headers"]
    assert headers[H.SOURCE_USER] == "mkt"
    assert not {H.ERROR_TYPE, H.ERROR_MESSAGE, H.X_DEATH, H.DELIVERY_COUNT, "x-first-death-queue"} & headers.keys()
    assert "user_id" not in copy.properties and copy.properties["message_id"] == "m-1"
    no_user = replay_copy(letter(headers={**FORGED, **broker_death()}), "ops", NOW)
    assert H.SOURCE_USER not in no_user.properties["application_headers"]


def test_replay_copy_counts_replays_and_bounds_who_did_it():
    assert replay_copy(letter(headers={H.REPLAYED: 2}), "ops", NOW).properties["application_headers"][H.REPLAYED] == 3
    for bad in ("abc", -1, 10**12, True, b"1", None):
        copy = replay_copy(letter(headers={H.REPLAYED: bad}), "ops", NOW)
        assert copy.properties["application_headers"][H.REPLAYED] == 1
    assert operator_name("a\x1b]0;x\x07" + "b" * 100) == ("a\\x1b]0;x\\x07" + "b" * 100)[:64]
    assert operator_name(None)  # the OS user


# --- the printed letter ----------------------------------------------------------------------------


def test_a_hostile_letter_is_printed_inert():
    hostile = letter(
        UNROUTED,
        body=f"<a>{HOSTILE}</a>\n<b/>".encode(),
        headers={f"x-h{HOSTILE}": f"v{HOSTILE}", H.ERROR_TYPE: f"forged{HOSTILE}", H.ERROR_MESSAGE: "a\nb"},
        type=f"T{HOSTILE}",
        correlation_id=f"c{HOSTILE}",
        message_id=f"m{HOSTILE}",
    )
    out = _render_letter(hostile)
    assert _raw_controls(out) == []
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in out and "\\u202e" in out and "\\x9b" in out
    assert "error type:  unroutable\n" in out
    untrusted = out.index("UNTRUSTED headers")
    assert out.index("x-gridbus-error-type: forged\\x1b") > untrusted
    assert out.index("x-gridbus-error: a\\nb") > untrusted
    assert "\n  <b/>\n" in out  # the body's own lines, indented


def test_a_long_body_and_header_are_cut_with_markers():
    out = _render_letter(letter(body=b"x" * 5000, headers={"big": "y" * 2000}))
    assert "big: " + "y" * 500 + "...[1,500 more characters cut]" in out
    assert "first 4,000 characters of 5,000, --full PATH for the exact bytes" in out
    assert out.rstrip().endswith("x...[1,000 more characters cut]")


def test_full_to_a_terminal_is_refused():
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from gridbus.tools.cli import main; main()", "dlq", "show", "--full", "-",
             "--store", "sqlite:///:memory:"],
            cwd=REPO, stdout=terminal, stderr=subprocess.PIPE, timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    finally:
        os.close(terminal)
        os.close(controller)
    assert done.returncode == 2
    assert b"writes raw bytes" in done.stderr
