"""``contracts.canonical.reply``: the 61968-100 replies gridbus sends a system about its request."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree

from gridbus.contracts.canonical.envelope import NAMESPACE
from gridbus.contracts.canonical.reply import SCHEMA, ObjectId, Reply, ReplyError, result_of

NOW = datetime(2026, 12, 8, 1, 30, tzinfo=timezone(timedelta(hours=8)))
M = {"m": NAMESPACE}
SCHEMA_DOC = etree.XMLSchema(etree.parse(str(SCHEMA)))


def fatal(xpath: str, code: str = "mdc.sum.1") -> ReplyError:
    return ReplyError(code=code, level="FATAL", reason="tariff registers do not add up", xpath=xpath)


def warning(xpath: str) -> ReplyError:
    return ReplyError(code="mdc.gap.1", level="WARNING", reason="last reading 3 days old", xpath=xpath)


@pytest.mark.parametrize(
    ("errors", "objects", "result"),
    [
        ((), 10, "OK"),
        ((warning("/r[1]"), warning("/r[2]")), 2, "OK"),  # warnings leave the objects accepted
        ((fatal("/r[1]"),), 10, "PARTIAL"),
        ((fatal("/r[1]"), fatal("/r[1]", "mdc.neg.1")), 2, "PARTIAL"),  # two errors, one object
        ((fatal("/r[1]"), fatal("/r[2]")), 2, "FAILED"),
        ((fatal("/Change"),), 1, "FAILED"),
    ],
)
def test_the_result_counts_refused_objects_not_errors(errors, objects, result):
    assert result_of(errors, objects) == result


def test_a_reply_is_a_schema_valid_response_message_naming_each_problem():
    reply = Reply(
        noun="MeterReadings", result="PARTIAL", correlation_id="batch-msg-1", message_id="reply-1", timestamp=NOW,
        errors=(
            ReplyError(
                code="mdc.sum.1", level="FATAL", reason="PAP_R1..PAP_R4 add up to 101.00, PAP_R is 100.00",
                xpath="/DailyFrozenReadings/Records/Record[7]",
                id=ObjectId("MP330106000123", id_type="MeteringPointId", id_authority="mkt"),
                details="line one\nline two",
            ),
        ),
    )
    root = etree.fromstring(reply.encode())
    SCHEMA_DOC.assertValid(root)
    assert root.findtext("m:Header/m:Verb", namespaces=M) == "reply"
    assert root.findtext("m:Header/m:Noun", namespaces=M) == "MeterReadings"
    assert root.findtext("m:Header/m:CorrelationID", namespaces=M) == "batch-msg-1"
    assert root.findtext("m:Header/m:Timestamp", namespaces=M) == "2026-12-08T01:30:00+08:00"
    assert root.findtext("m:Reply/m:Result", namespaces=M) == "PARTIAL"
    [error] = root.findall("m:Reply/m:Error", namespaces=M)
    assert error.findtext("m:code", namespaces=M) == "mdc.sum.1"
    assert error.findtext("m:level", namespaces=M) == "FATAL"
    assert error.findtext("m:xpath", namespaces=M) == "/DailyFrozenReadings/Records/Record[7]"
    assert "\n" not in error.findtext("m:details", namespaces=M)  # one line, as every reason
    ident = error.find("m:ID", namespaces=M)
    assert (ident.text, ident.get("idType"), ident.get("idAuthority")) == ("MP330106000123", "MeteringPointId", "mkt")


def test_a_reason_from_input_is_bounded_and_inert():
    reply = Reply(
        noun="MasterData", result="FAILED", correlation_id="c", message_id="m", timestamp=NOW,
        errors=(ReplyError(code="x", level="FATAL", reason="\u202e" + "长" * 2000),),
    )
    reason = etree.fromstring(reply.encode()).findtext("m:Reply/m:Error/m:reason", namespaces=M)
    assert len(reason.encode("utf-8")) <= 500
    assert "\u202e" not in reason


def test_a_reply_refuses_what_61968_100_does_not_know():
    with pytest.raises(ValueError, match="level"):
        ReplyError(code="x", level="ERROR", reason="r")
    with pytest.raises(ValueError, match="result"):
        Reply(noun="N", result="DONE", correlation_id="c", message_id="m", timestamp=NOW)
    with pytest.raises(ValueError, match="timezone"):
        Reply(noun="N", result="OK", correlation_id="c", message_id="m", timestamp=datetime(2026, 12, 8))
