"""Times leave gridbus in +08:00 (the same instant), and date-only fields are China-local days."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest
from lxml import etree

from gridbus.contracts.base import MappingContext
from gridbus.contracts.canonical import CanonicalEvent
from gridbus.contracts.mkt import EnergizationTimeSet, OwnershipEstablished
from gridbus.contracts.times import CHINA, china_date, china_time
from gridbus.mappings import events, mkt_to_cmd
from tests.support.retail import tc_requests

UTC_EVENING = datetime(2026, 11, 30, 16, 30, tzinfo=timezone.utc)  # 00:30 on 1 December in China
MESSAGE_NS = "{http://iec.ch/TC57/2011/schema/message}"


def test_a_utc_instant_is_the_same_instant_written_in_china_time():
    assert china_time(UTC_EVENING).isoformat() == "2026-12-01T00:30:00+08:00"
    assert china_time(UTC_EVENING) == UTC_EVENING
    assert china_date(UTC_EVENING) == date(2026, 12, 1)
    with pytest.raises(ValueError, match="no offset"):
        china_time(datetime(2026, 12, 1))


def test_json_to_marketing_writes_every_time_in_china_time():
    notice = OwnershipEstablished(
        user_unit_id="RU1", customer_no="0731000012345", sales_company_credit_code="91350200776049653A",
        agreement_no="TA202612-RU1", period_start=date(2026, 12, 1), period_end=date(2027, 11, 30),
        effective_time=datetime(2026, 11, 30, 16, tzinfo=timezone.utc), established_at=UTC_EVENING)
    body = json.loads(notice.encode())
    assert body["effective_time"] == "2026-12-01T00:00:00+08:00"
    assert body["established_at"] == "2026-12-01T00:30:00+08:00"


def test_soap_requests_carry_china_time_whatever_offset_they_were_given():
    archival = tc_requests()["ArchivalResult"]
    fields = archival.model_dump() | {"sent_at": UTC_EVENING, "archived_at": UTC_EVENING}
    soap = type(archival)(**fields).to_soap()
    assert soap["SentAt"].isoformat() == soap["ArchivedAt"].isoformat() == "2026-12-01T00:30:00+08:00"


def test_a_time_received_in_utc_goes_on_to_the_command_center_in_china_time():
    body = json.dumps({"schema_version": "1", "application_no": "HV2026110300017",
                       "intended_energization_time": "2026-12-18T01:30:00Z", "revision": 2,
                       "set_at": "2026-11-25T02:05:00Z", "set_by": "kh330106017"}).encode()
    message = EnergizationTimeSet.decode(body)
    ctx = MappingContext(route="r", step="cmd", message_id="m-1", correlation_id="c", source_message_id="s",
                         source_system="mkt", now=UTC_EVENING)
    request = mkt_to_cmd.energization_time(message, ctx)
    assert request.to_soap()["IntendedEnergizationTime"].isoformat() == "2026-12-18T09:30:00+08:00"
    event = events.energization_time_changed(message, ctx)
    root = etree.fromstring(event.encode())
    assert root.findtext(f"{MESSAGE_NS}Header/{MESSAGE_NS}Timestamp") == "2026-12-01T00:30:00+08:00"
    times = [e.text for e in root.iter() if isinstance(e.tag, str) and e.tag.endswith(("intendedEnergizationTime", "setAt"))]
    assert times == ["2026-12-18T09:30:00+08:00", "2026-11-25T10:05:00+08:00"]


def test_a_canonical_event_keeps_the_instant_of_its_timestamp():
    event = CanonicalEvent(verb="created", noun="SupplyPlan", timestamp=UTC_EVENING, message_id="m", correlation_id="c",
                           payload=etree.Element("{urn:gridbus:canonical:SupplyPlan:1}SupplyPlan"))
    assert event.timestamp == UTC_EVENING and event.timestamp.utcoffset() == CHINA.utcoffset(None)
