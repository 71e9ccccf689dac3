"""The trading center's SOAP service over real HTTP on loopback: the tc requests, through the
adapter that ``build_soap_adapters`` makes from settings, into the stub serving the shipped WSDL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gridbus.adapters.soap import SoapAdapter, build_soap_adapters
from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.soap import peer_wsdl
from gridbus.contracts.base import MappingContext
from gridbus.contracts.tc.soap import (
    AgreementInfo,
    ArchivalResult,
    ArchiveFeedback,
    OwnershipRelation,
    ReviewReason,
    UserReviewResult,
)
from tests.support.retail import tc_requests
from gridbus.contracts.errors import PermanentDeliveryError
from gridbus.workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
WSDL = peer_wsdl("tc")
CST = timezone(timedelta(hours=8))
NOW = datetime(2026, 11, 26, 9, 30, tzinfo=CST)


@pytest.fixture(scope="module", autouse=True)
def _drop_the_modules_queues():
    """This module uses no broker: there are no queues of its own to drop (overrides the suite's)."""
    yield


def archive_feedback(message_id: str = "gb-tc-archive-1") -> ArchiveFeedback:
    return tc_requests(message_id)["ArchiveFeedback"]


def agreement_info(message_id: str = "gb-tc-agreement-1") -> AgreementInfo:
    return tc_requests(message_id)["AgreementInfo"]


def archival_result(message_id: str = "gb-tc-archival-1") -> ArchivalResult:
    return tc_requests(message_id)["ArchivalResult"]


def ownership_relation(message_id: str = "gb-tc-ownership-1") -> OwnershipRelation:
    return tc_requests(message_id)["OwnershipRelation"]


def user_review_result(message_id: str = "gb-tc-review-1") -> UserReviewResult:
    """A refusal of a second binding in the period, with its reason."""
    accepted = tc_requests(message_id)["UserReviewResult"]
    return UserReviewResult(**(accepted.model_dump() | {
        "decision": "refused",
        "reasons": (ReviewReason(code="period-taken", field="PeriodStart", message="该用户在本周期已绑定其他售电公司"),),
    }))


def context(request) -> MappingContext:
    return MappingContext(
        route="tc.test",
        step="tc",
        message_id=request.message_id,
        correlation_id=request.correlation_id,
        source_message_id="src-1",
        source_system="tc",
        now=NOW,
    )


@pytest.fixture(scope="module")
def module_stub():
    with SoapStub(WSDL, path="/tc") as stub:
        yield stub


@pytest.fixture
def stub(module_stub: SoapStub) -> SoapStub:
    module_stub.reset()
    return module_stub


@pytest.fixture(scope="module")
def tc(module_stub: SoapStub) -> SoapAdapter:
    """The trading center's adapter exactly as the worker builds it from settings."""
    settings = Settings(soap_peers={"tc": module_stub.url}, soap_timeout_s=2.0, soap_username=None)
    adapter = build_soap_adapters(settings)["tc"]
    yield adapter
    adapter.close()


def test_the_factory_builds_a_trading_center_adapter(tc, module_stub):
    assert WSDL.name == "TradingCenterService.wsdl"
    assert (tc.name, tc.endpoint_url, tc.timeout_s) == ("tc", module_stub.url, 2.0)
    assert tc.wsdl_path == WSDL and WSDL.is_file()
    assert module_stub.operations == {
        "ReceiveArchiveFeedback",
        "ReceiveAgreementInfo",
        "ReceiveArchivalResult",
        "ReceiveMeterReadings",
        "ReceiveOwnershipRelation",
        "ReceiveUserReviewResult",
    }


def test_default_endpoint_is_the_loopback_stub_port():
    assert Settings.model_fields["soap_peers"].default_factory() == {
        "cmd": "http://127.0.0.1:8081/cmd",
        "tc": "http://127.0.0.1:8082/tc",
    }


def test_archive_feedback_arrives(stub, tc):
    request = archive_feedback()
    receipt = tc.call(request.operation, request, context(request))

    assert receipt.result == "OK" and receipt.receipt_id
    [call] = stub.effects("ReceiveArchiveFeedback")
    assert call.message_id == "gb-tc-archive-1" and call.receipt_id == receipt.receipt_id
    payload = call.payload
    assert payload["CorrelationID"] == "RU2026110001"
    assert datetime.fromisoformat(payload["SentAt"]) == NOW
    assert (payload["ArchiveId"], payload["ArchiveRevision"]) == ("SCA-2026-000317", "2")
    assert payload["CreditCode"] == "P42040113310410"
    assert payload["Decision"] == "rejected"
    assert payload["Reasons"]["Reason"] == [
        {"Code": "credit-code-length", "Field": "CreditCode", "Message": "统一社会信用代码应为18位，收到15位"},
        {"Code": "missing", "Field": "LegalRepresentative", "Message": "LegalRepresentative is required"},
    ]


def test_accepted_archive_feedback_has_no_reasons(stub, tc):
    request = ArchiveFeedback(**(archive_feedback("gb-tc-archive-ok").model_dump() | {"decision": "accepted", "reasons": ()}))
    tc.deliver(request.operation, request, context(request))

    [call] = stub.effects("ReceiveArchiveFeedback")
    assert call.payload["Decision"] == "accepted" and call.payload["Reasons"] is None  # <Reasons/>


def test_agreement_info_arrives(stub, tc):
    request = agreement_info()
    tc.deliver(request.operation, request, context(request))

    [call] = stub.effects("ReceiveAgreementInfo")
    assert call.message_id == "gb-tc-agreement-1"
    payload = call.payload
    assert (payload["AgreementNo"], payload["UserUnitId"], payload["CustomerNo"]) == (
        "TPA-2026-110001", "RU2026110001", "0731000012345"
    )
    assert payload["SalesCompanyCreditCode"] == "91350200776049653A"
    assert (payload["PeriodStart"], payload["PeriodEnd"]) == ("2026-12-01", "2027-11-30")
    assert payload["MeteringPoints"]["MeteringPoint"] == [
        {"MeteringPointId": "4301050001234", "Category": "large_industrial"},
        {"MeteringPointId": "4301050001235", "Category": "general_commercial_industrial"},
    ]


def test_archival_result_arrives(stub, tc):
    request = archival_result()
    tc.deliver(request.operation, request, context(request))

    [call] = stub.effects("ReceiveArchivalResult")
    assert call.message_id == "gb-tc-archival-1"
    assert call.payload["AgreementNo"] == "TPA-2026-110001"
    assert datetime.fromisoformat(call.payload["ArchivedAt"]) == NOW
    assert call.payload["EffectiveTime"] == "2026-12-01T00:00:00+08:00"


def test_ownership_relation_arrives(stub, tc):
    request = ownership_relation()
    tc.deliver(request.operation, request, context(request))

    [call] = stub.effects("ReceiveOwnershipRelation")
    assert call.message_id == "gb-tc-ownership-1"
    payload = call.payload
    assert (payload["UserUnitId"], payload["CustomerNo"], payload["AgreementNo"]) == (
        "RU2026110001", "0731000012345", "TPA-2026-110001"
    )
    assert payload["EffectiveTime"] == "2026-12-01T00:00:00+08:00"
    assert (payload["PeriodStart"], payload["PeriodEnd"]) == ("2026-12-01", "2027-11-30")
    assert [p["MeteringPointId"] for p in payload["MeteringPoints"]["MeteringPoint"]] == ["4301050001234", "4301050001235"]


def test_user_review_result_arrives(stub, tc):
    request = user_review_result()
    tc.deliver(request.operation, request, context(request))

    [call] = stub.effects("ReceiveUserReviewResult")
    assert call.message_id == "gb-tc-review-1"
    payload = call.payload
    assert (payload["UserUnitId"], payload["Decision"]) == ("RU2026110001", "refused")
    assert payload["Reasons"]["Reason"] == [
        {"Code": "period-taken", "Field": "PeriodStart", "Message": "该用户在本周期已绑定其他售电公司"}
    ]


REQUESTS = [archive_feedback, agreement_info, archival_result, ownership_relation, user_review_result]


@pytest.mark.parametrize("make", REQUESTS, ids=lambda f: f.__name__)
def test_same_message_id_twice_is_applied_once(stub, tc, make):
    request = make(f"gb-tc-dup-{make.__name__}")
    first = tc.call(request.operation, request, context(request))
    again = tc.call(request.operation, request, context(request))

    assert [c.message_id for c in stub.calls] == [request.message_id] * 2
    [effect] = stub.effects()
    assert effect.operation == request.operation and effect.message_id == request.message_id
    assert again.receipt_id == first.receipt_id


def test_all_five_in_one_conversation_each_applied_once(stub, tc):
    requests = [make() for make in REQUESTS]
    for request in requests + requests:  # a redelivered batch
        tc.deliver(request.operation, request, context(request))

    assert len(stub.calls) == 10
    assert [(c.operation, c.message_id) for c in stub.effects()] == [(r.operation, r.message_id) for r in requests]


def test_refusal_by_the_trading_center_is_permanent(stub, tc):
    stub.fail_next(1, "soap_client_fault")
    request = ownership_relation("gb-tc-refused")
    with pytest.raises(PermanentDeliveryError) as caught:
        tc.deliver(request.operation, request, context(request))
    for part in ("ReceiveOwnershipRelation", stub.url, "gb-tc-refused"):
        assert part in caught.value.reason
    assert stub.effects() == []


def test_gridbus_stub_tc_serves_the_trading_center_wsdl(tmp_path):
    """``gridbus stub tc`` (here on a free port) answers the tc operations like the in-process stub."""
    log = tmp_path / "stub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from gridbus.tools.cli import main; main()", "stub", "tc", "--port", "0"],
            cwd=ROOT,
            env={**os.environ, "GRIDBUS_SOAP_PEERS": "tc=http://127.0.0.1:8082/trading"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = _wait_for_url(proc, log)
        assert url.endswith("/trading")  # the path of the tc URL in GRIDBUS_SOAP_PEERS
        adapter = SoapAdapter("tc", WSDL, url, timeout_s=2.0)
        request = archival_result("gb-tc-cli")
        receipt = adapter.call(request.operation, request, context(request))
        assert receipt.result == "OK" and receipt.receipt_id
        adapter.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert proc.returncode == 0, log.read_text(errors="replace")


def _wait_for_url(proc: subprocess.Popen, log: Path, timeout_s: float = 20) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = re.search(r"SOAP stub for TradingCenterService\.wsdl at (http://\S+)", log.read_text(errors="replace"))
        if match:
            return match.group(1)
        if proc.poll() is not None:
            pytest.fail(f"gridbus stub tc exited with {proc.returncode}: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    pytest.fail(f"gridbus stub tc printed no URL within {timeout_s:g} s: {log.read_text(errors='replace')}")
