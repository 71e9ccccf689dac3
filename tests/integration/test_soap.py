"""SOAP delivery over real HTTP on loopback: zeep against the stub peer."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests
import zeep

from gridbus.adapters import soap
from gridbus.adapters.soap import SoapAdapter, build_soap_adapters
from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.soap import peer_wsdl
from gridbus.contracts.base import MappingContext
from gridbus.contracts.errors import PermanentDeliveryError, TransientDeliveryError
from gridbus.workers.settings import Settings

WSDL = peer_wsdl("cmd")
NOW = datetime(2025, 3, 14, 9, 30, tzinfo=timezone(timedelta(hours=8)))
TIMEOUT_S = 0.5


class SoapRequest:
    """Stands in for an outbound contract: ``to_soap()`` and ``message_id``."""

    def __init__(self, **kwargs: Any):
        self._kwargs = kwargs

    @property
    def message_id(self) -> str:
        return self._kwargs["MessageID"]

    def to_soap(self) -> dict[str, Any]:
        return dict(self._kwargs)


def supply_plan(message_id: str = "msg-plan-1", **overrides: Any) -> SoapRequest:
    fields = dict(
        MessageID=message_id,
        CorrelationID="corr-2025-0001",
        SentAt=NOW,
        ApplicationNo="GZ-2025-000123",
        CustomerName="广州市番禺区金山谷纺织有限公司",
        ContactPhone="020-8888-1234",
        SupplyVoltageKV=Decimal("10"),
        ContractCapacityKVA=Decimal("1630.5"),
        IntendedEnergizationTime=NOW + timedelta(days=30),
        PlanRevision=2,
        AccessPlan={
            "SupplyPoint": [
                {"Substation": "110kV 石碁站", "Line": "10kV 金山线 F12", "PowerSource": "主供"},
                {"Substation": "110kV 大龙站", "Line": "10kV 大龙线 F07", "PowerSource": "备供"},
            ]
        },
        MeteringPlan={
            "MeteringPoint": [
                {"MeteringPointId": "MP-0001", "Category": "I类", "VoltageKV": Decimal("10"), "CTRatio": 100, "PTRatio": 100}
            ]
        },
        BillingPlan={"TariffCategory": "大工业用电", "MaxDemandBasis": "按合同最大需量"},
        CustomerEquipmentPlan={
            "Transformer": [
                {"Model": "SCB13-800/10", "CapacityKVA": Decimal("800")},
                {"Model": "SCB13-630/10", "CapacityKVA": Decimal("630")},
            ]
        },
    )
    fields.update(overrides)
    return SoapRequest(**fields)


def energization_time(message_id: str = "msg-time-1") -> SoapRequest:
    return SoapRequest(
        MessageID=message_id,
        CorrelationID="corr-2025-0001",
        SentAt=NOW,
        ApplicationNo="GZ-2025-000123",
        IntendedEnergizationTime=NOW + timedelta(days=45),
        Revision=3,
    )


def context(request: SoapRequest) -> MappingContext:
    return MappingContext(
        route="pms.supply-plan",
        step="cmd",
        message_id=request.message_id,
        correlation_id="corr-2025-0001",
        source_message_id="src-1",
        source_system="pms",
        now=NOW,
    )


def deliver(adapter: SoapAdapter, operation: str, request: SoapRequest) -> None:
    adapter.deliver(operation, request, context(request))


@pytest.fixture(scope="module")
def module_stub():
    with SoapStub(WSDL, delay_s=2.0) as stub:
        yield stub


@pytest.fixture
def stub(module_stub: SoapStub) -> SoapStub:
    module_stub.reset()
    return module_stub


@pytest.fixture(scope="module")
def adapter(module_stub: SoapStub):
    adapter = SoapAdapter("cmd", WSDL, module_stub.url, timeout_s=TIMEOUT_S)
    yield adapter
    adapter.close()


def test_supply_plan_arrives_whole(stub, adapter):
    request = supply_plan()
    receipt = adapter.call("ReceiveSupplyPlan", request, context(request))

    assert receipt.result == "OK" and receipt.receipt_id
    [call] = stub.calls
    assert call.operation == "ReceiveSupplyPlan" and call.message_id == "msg-plan-1"
    payload = call.payload
    assert payload["CustomerName"] == "广州市番禺区金山谷纺织有限公司"
    assert payload["ContractCapacityKVA"] == "1630.5"
    assert datetime.fromisoformat(payload["SentAt"]) == NOW
    assert [p["Substation"] for p in payload["AccessPlan"]["SupplyPoint"]] == ["110kV 石碁站", "110kV 大龙站"]
    assert payload["MeteringPlan"]["MeteringPoint"] == [
        {"MeteringPointId": "MP-0001", "Category": "I类", "VoltageKV": "10", "CTRatio": "100", "PTRatio": "100"}
    ]
    assert payload["BillingPlan"] == {"TariffCategory": "大工业用电", "MaxDemandBasis": "按合同最大需量"}
    assert len(payload["CustomerEquipmentPlan"]["Transformer"]) == 2
    assert call.receipt_id == receipt.receipt_id


def test_energization_time_arrives(stub, adapter):
    deliver(adapter, "ReceiveEnergizationTime", energization_time())

    [call] = stub.effects("ReceiveEnergizationTime")
    assert call.payload["Revision"] == "3"
    assert datetime.fromisoformat(call.payload["IntendedEnergizationTime"]) == NOW + timedelta(days=45)
    assert stub.effects("ReceiveSupplyPlan") == []


def test_same_message_id_twice_is_applied_once(stub, adapter):
    first = adapter.call("ReceiveSupplyPlan", supply_plan("msg-dup"), context(supply_plan("msg-dup")))
    again = adapter.call("ReceiveSupplyPlan", supply_plan("msg-dup"), context(supply_plan("msg-dup")))

    assert len(stub.calls) == 2
    assert len(stub.effects()) == 1
    assert again.receipt_id == first.receipt_id


@pytest.mark.parametrize(
    ("kind", "error", "mentions"),
    [
        ("http500", TransientDeliveryError, "HTTP 500"),
        ("http503", TransientDeliveryError, "HTTP 503"),
        ("http400", PermanentDeliveryError, "HTTP 400"),
        ("soap_server_fault", TransientDeliveryError, "soap:Server: injected server fault"),
        ("soap_client_fault", PermanentDeliveryError, "soap:Client: injected client fault"),
        ("result_failed", PermanentDeliveryError, "Result='FAILED'"),
    ],
)
def test_fault_kinds_decide_the_error(stub, adapter, kind, error, mentions):
    stub.fail_next(1, kind)
    request = supply_plan(f"msg-{kind}")

    with pytest.raises(error) as caught:
        deliver(adapter, "ReceiveSupplyPlan", request)

    reason = caught.value.reason
    for part in ("ReceiveSupplyPlan", stub.url, f"msg-{kind}", mentions):
        assert part in reason
    if kind != "result_failed":
        assert isinstance(caught.value.__cause__, zeep.exceptions.Error)
    assert stub.effects() == []
    deliver(adapter, "ReceiveSupplyPlan", request)  # the fault was for one call only
    assert len(stub.effects()) == 1


def test_slow_peer_times_out_and_the_retry_is_applied_once():
    with SoapStub(WSDL, delay_s=TIMEOUT_S + 0.4) as stub:
        adapter = SoapAdapter("cmd", WSDL, stub.url, timeout_s=TIMEOUT_S)
        adapter.load()
        stub.fail_next(1, "delay")
        request = energization_time("msg-slow")

        started = time.monotonic()
        with pytest.raises(TransientDeliveryError) as caught:
            deliver(adapter, "ReceiveEnergizationTime", request)
        elapsed = time.monotonic() - started

        assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + 0.4
        assert "msg-slow" in caught.value.reason and "ReadTimeout" in caught.value.reason
        assert isinstance(caught.value.__cause__, requests.Timeout)

        deliver(adapter, "ReceiveEnergizationTime", request)
        deadline = time.monotonic() + 2
        while len(stub.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the slow request is still being applied by the peer
        assert len(stub.calls) == 2
        assert len(stub.effects()) == 1
        adapter.close()


def test_unreachable_peer_is_transient():
    with SoapStub(WSDL) as stub:
        url = stub.url
    adapter = SoapAdapter("cmd", WSDL, url, timeout_s=TIMEOUT_S)

    with pytest.raises(TransientDeliveryError) as caught:
        deliver(adapter, "ReceiveEnergizationTime", energization_time("msg-down"))

    assert "cannot reach the peer" in caught.value.reason and url in caught.value.reason
    assert isinstance(caught.value.__cause__, requests.ConnectionError)


def test_request_that_does_not_fit_the_wsdl_is_permanent_and_not_sent(stub, adapter):
    missing = supply_plan("msg-missing", ApplicationNo=None)
    with pytest.raises(PermanentDeliveryError) as caught:
        deliver(adapter, "ReceiveSupplyPlan", missing)
    assert "does not fit the WSDL" in caught.value.reason and "ApplicationNo" in caught.value.reason
    assert isinstance(caught.value.__cause__, zeep.exceptions.ValidationError)

    unknown = supply_plan("msg-unknown", Colour="blue")
    with pytest.raises(PermanentDeliveryError, match="Colour"):
        deliver(adapter, "ReceiveSupplyPlan", unknown)

    with pytest.raises(PermanentDeliveryError, match="no operation 'ReceiveBlackMap'"):
        deliver(adapter, "ReceiveBlackMap", unknown)
    assert stub.calls == []


def test_one_client_for_many_calls_and_the_wsdl_is_read_locally(stub, monkeypatch):
    created = []

    class CountingClient(zeep.Client):
        def __init__(self, *args: Any, **kwargs: Any):
            created.append(kwargs["transport"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(soap, "Client", CountingClient)
    adapter = SoapAdapter("cmd", WSDL, stub.url, timeout_s=TIMEOUT_S)
    assert created == []  # nothing happens at construction
    for n in range(3):
        deliver(adapter, "ReceiveEnergizationTime", energization_time(f"msg-reuse-{n}"))

    assert len(created) == 1
    assert created[0].operation_timeout == TIMEOUT_S
    assert stub.wsdl_requests == 0
    assert len(stub.effects()) == 3
    adapter.close()


def test_ws_security_username_token_with_digest():
    with SoapStub(WSDL, users={"gridbus": "s3cret"}) as stub:
        good = SoapAdapter("cmd", WSDL, stub.url, timeout_s=TIMEOUT_S, username="gridbus", password="s3cret")
        deliver(good, "ReceiveEnergizationTime", energization_time("msg-wsse"))
        [call] = stub.effects()
        assert call.username == "gridbus"

        wrong = SoapAdapter("cmd", WSDL, stub.url, timeout_s=TIMEOUT_S, username="gridbus", password="guess")
        with pytest.raises(PermanentDeliveryError, match="FailedAuthentication"):
            deliver(wrong, "ReceiveEnergizationTime", energization_time("msg-wsse-2"))

        anonymous = SoapAdapter("cmd", WSDL, stub.url, timeout_s=TIMEOUT_S)
        with pytest.raises(PermanentDeliveryError, match="FailedAuthentication"):
            deliver(anonymous, "ReceiveEnergizationTime", energization_time("msg-wsse-3"))
        assert stub.calls[-1].username is None


def test_fail_when_and_fail_for(stub, adapter):
    stub.fail_when(lambda payload: payload.get("ApplicationNo") == "GZ-BAD", "soap_client_fault")
    with pytest.raises(PermanentDeliveryError):
        deliver(adapter, "ReceiveSupplyPlan", supply_plan("msg-bad", ApplicationNo="GZ-BAD"))
    deliver(adapter, "ReceiveSupplyPlan", supply_plan("msg-good"))
    stub.clear_faults()
    deliver(adapter, "ReceiveSupplyPlan", supply_plan("msg-bad", ApplicationNo="GZ-BAD"))

    stub.fail_for(0.3, "http503")
    with pytest.raises(TransientDeliveryError):
        deliver(adapter, "ReceiveEnergizationTime", energization_time("msg-window"))
    time.sleep(0.35)
    deliver(adapter, "ReceiveEnergizationTime", energization_time("msg-window"))
    assert [c.message_id for c in stub.effects()] == ["msg-good", "msg-bad", "msg-window"]


def test_control_endpoint_drives_a_stub_from_outside(stub, adapter):
    base = stub.url.removesuffix(stub.path)
    assert requests.post(f"{base}/_control/faults", json={"kind": "soap_server_fault", "count": 1}).ok
    assert requests.post(f"{base}/_control/faults", json={"kind": "nonsense"}).status_code == 400

    with pytest.raises(TransientDeliveryError):
        deliver(adapter, "ReceiveEnergizationTime", energization_time("msg-ctl"))
    deliver(adapter, "ReceiveEnergizationTime", energization_time("msg-ctl"))

    calls = requests.get(f"{base}/_control/calls").json()
    assert [(c["message_id"], c["outcome"]) for c in calls] == [("msg-ctl", "soap_server_fault"), ("msg-ctl", "ok")]
    assert len(requests.get(f"{base}/_control/effects").json()) == 1
    assert "CommandCenterPort" in requests.get(f"{stub.url}?wsdl").text


def test_stub_refuses_entities_and_garbage(stub):
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<ReceiveEnergizationTimeRequest xmlns="urn:gridbus:cmd:service:1"><MessageID>&x;</MessageID>'
        b"</ReceiveEnergizationTimeRequest></soap:Body></soap:Envelope>"
    )
    requests.post(stub.url, data=xxe, headers={"Content-Type": "text/xml"})
    assert all("root:" not in str(c.payload) for c in stub.calls)

    garbage = requests.post(stub.url, data=b"<not-xml", headers={"Content-Type": "text/xml"})
    assert garbage.status_code == 500 and b"soap:Client" in garbage.content


def test_factory_builds_the_command_center_adapter(stub):
    settings = Settings(soap_peers={"cmd": stub.url}, soap_timeout_s=1.5, soap_username=None)
    adapters = build_soap_adapters(settings)

    cmd = adapters["cmd"]
    assert (cmd.name, cmd.endpoint_url, cmd.timeout_s) == ("cmd", stub.url, 1.5)
    assert cmd.wsdl_path.is_file()
    deliver(cmd, "ReceiveEnergizationTime", energization_time("msg-factory"))
    assert len(stub.effects()) == 1
    cmd.close()
