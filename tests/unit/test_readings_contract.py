"""The mdc DailyFrozenPublished contract: the examples decode, GBK keeps its Chinese, and what the
schema cannot say (record count, part number) or the safe XML path refuses is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree

from gridbus.contracts import EXAMPLES_DIR
from gridbus.contracts.base import MappingContext
from gridbus.contracts.errors import ContractViolation
from gridbus.contracts.mdc import DailyFrozenPublished
from gridbus.mappings.readings.outputs import part_event
from gridbus.tools.readings_batch import DAY, Batch, good_record

NOW = datetime(2026, 12, 3, 2, 0, tzinfo=timezone(timedelta(hours=8)))


def test_the_examples_decode():
    big = DailyFrozenPublished.decode((EXAMPLES_DIR / "mdc.DailyFrozenPublished.xml").read_bytes())
    small = DailyFrozenPublished.decode((EXAMPLES_DIR / "mdc.DailyFrozenPublished.small.xml").read_bytes())
    assert len(big.readings) == big.record_count == 1000 and len(small.readings) == 3
    first = big.readings[0]
    assert first.index == 1 and first.collected_at.utcoffset() == timedelta(hours=8)
    assert sum(first.tariffs) == first.total and first.xpath == "/DailyFrozenPublished/Records/Record[1]"


def test_a_gbk_part_keeps_its_chinese_org_name_into_the_event():
    body = (EXAMPLES_DIR / "mdc.DailyFrozenPublished.gbk.xml").read_bytes()
    assert body.startswith(b'<?xml version="1.0" encoding="GBK"?>') and "湘潭".encode("gbk") in body
    part = DailyFrozenPublished.decode(body)
    assert part.org_name == "国网湘潭供电公司（岳塘区）"
    context = MappingContext(route="mdc.daily-frozen-published", step="event", message_id="e1", correlation_id="c1",
                             source_message_id="m1", source_system="mdc", now=NOW,
                             decision={"result": "OK", "counts": dict.fromkeys(
                                 ("received", "accepted", "flagged", "withheld", "repeats", "corrections", "market"), 0)})
    event = etree.fromstring(part_event(part, context).encode())
    assert event.findtext(".//{urn:gridbus:canonical:MeterReadingBatch:1}orgName") == "国网湘潭供电公司（岳塘区）"


def batch(**changes) -> Batch:
    return replace(Batch("B-1", DAY, tuple(good_record(n, DAY) for n in range(1, 4))), **changes)


@pytest.mark.parametrize("body, says", [
    (batch(record_count=4).xml(), "RecordCount says 4 records, the part holds 3"),
    (batch(part_no=3, part_count=2).xml(), "PartNo 3 is beyond PartCount 2"),
    (batch().xml().replace(b"urn:gridbus:mdc:daily-frozen:1", b"urn:gridbus:mdc:daily-frozen:2"), "version 1"),
    (batch().xml().replace(b"+08:00</CollectedAt>", b"Z</CollectedAt>", 1), "does not match schema"),
    (batch(org_name="国网长沙供电公司").xml("GBK").replace(b'encoding="GBK"', b'encoding="UTF-8"'), "not valid UTF-8"),
    (batch().xml().replace(b"?>\n", b'?>\n<!DOCTYPE d [<!ENTITY x "y">]>\n', 1), "DOCTYPE"),
])
def test_what_the_contract_refuses(body, says):
    with pytest.raises(ContractViolation) as refused:
        DailyFrozenPublished.decode(body)
    assert says in str(refused.value)


def test_a_part_over_the_contracts_limit_is_refused_before_parsing(monkeypatch):
    monkeypatch.setattr(DailyFrozenPublished, "max_bytes", 100)
    with pytest.raises(ContractViolation, match="over the limit of 100 bytes"):
        DailyFrozenPublished.decode(batch().xml())


def test_a_negative_register_is_a_bad_record_not_a_bad_part():
    record = good_record(1, DAY)
    part = DailyFrozenPublished.decode(batch(records=(replace(record, total=-record.total),)).xml())
    assert part.readings[0].total < 0
