"""How failures of a SOAP call decide the message's fate."""

from __future__ import annotations

import pytest
import requests
from zeep.exceptions import Fault, TransportError, ValidationError, XMLParseError, XMLSyntaxError

from gridbus.adapters.soap import SoapCallSite, classify_soap_error, fault_code_name, receipt_from_response
from gridbus.contracts.errors import PermanentDeliveryError, TransientDeliveryError

SITE = SoapCallSite("ReceiveSupplyPlan", "http://cmd.example/cmd", "msg-42")


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("soap:Server", "Server"),
        ("Server", "Server"),
        ("env:Receiver", "Receiver"),
        ("soapenv:Server.Busy", "Server"),
        ("{http://schemas.xmlsoap.org/soap/envelope/}Client", "Client"),
        ("SOAP-ENV:Client.Validation", "Client"),
        (None, ""),
    ],
)
def test_fault_code_name(code, name):
    assert fault_code_name(code) == name


@pytest.mark.parametrize(
    ("exc", "error", "mentions"),
    [
        (Fault("database down", code="soap:Server"), TransientDeliveryError, "soap:Server: database down"),
        (Fault("busy", code="env:Receiver"), TransientDeliveryError, "env:Receiver: busy"),
        (Fault("Unknown fault occured", code=None), TransientDeliveryError, "no faultcode"),
        (Fault("bad ApplicationNo", code="soap:Client"), PermanentDeliveryError, "soap:Client: bad ApplicationNo"),
        (Fault("mismatch", code="soap:VersionMismatch"), PermanentDeliveryError, "VersionMismatch"),
        (TransportError("bad gateway", status_code=502), TransientDeliveryError, "HTTP 502"),
        (TransportError("unavailable", status_code=503), TransientDeliveryError, "HTTP 503"),
        (TransportError("not found", status_code=404), PermanentDeliveryError, "HTTP 404"),
        (TransportError("bad request", status_code=400), PermanentDeliveryError, "HTTP 400"),
        (TransportError("slow down", status_code=429), TransientDeliveryError, "HTTP 429"),
        (ValidationError("Missing element ApplicationNo"), PermanentDeliveryError, "ApplicationNo"),
        (ValidationError("Expected at least 1 items", path=["AccessPlan", "SupplyPoint"]), PermanentDeliveryError,
         "(AccessPlan.SupplyPoint)"),
        (TypeError("got an unexpected keyword argument 'Colour'"), PermanentDeliveryError, "Colour"),
        (XMLParseError("Unexpected element 'Foo'"), PermanentDeliveryError, "same WSDL version"),
        (XMLSyntaxError("no Envelope"), TransientDeliveryError, "malformed XML"),
        (requests.ReadTimeout("read timed out"), TransientDeliveryError, "ReadTimeout"),
        (requests.ConnectTimeout("connect timed out"), TransientDeliveryError, "ConnectTimeout"),
        (requests.ConnectionError("connection refused"), TransientDeliveryError, "connection refused"),
        (requests.exceptions.ChunkedEncodingError("cut"), TransientDeliveryError, "ChunkedEncodingError"),
    ],
)
def test_classification(exc, error, mentions):
    classified = classify_soap_error(exc, SITE)

    assert type(classified) is error
    for part in ("ReceiveSupplyPlan", "http://cmd.example/cmd", "msg-42", mentions):
        assert part in classified.reason


def test_long_fault_strings_are_cut():
    classified = classify_soap_error(Fault("x" * 5000, code="soap:Client"), SITE)
    assert len(classified.reason) < 700


def test_other_exceptions_are_not_delivery_errors():
    assert classify_soap_error(KeyError("bug"), SITE) is None
    assert classify_soap_error(RuntimeError("bug"), SITE) is None


class Response:
    def __init__(self, **fields):
        self.__dict__.update(fields)


@pytest.mark.parametrize("response", [{"Result": "OK", "ReceiptID": "R-1"}, Response(Result="OK", ReceiptID="R-1")])
def test_ok_response_gives_the_receipt(response):
    receipt = receipt_from_response(response, SITE)
    assert (receipt.result, receipt.receipt_id, receipt.message_id) == ("OK", "R-1", "msg-42")


@pytest.mark.parametrize("response", [{"Result": "FAILED", "ReceiptID": None}, None, {"ReceiptID": "R-2"}])
def test_anything_but_ok_is_refused(response):
    with pytest.raises(PermanentDeliveryError) as caught:
        receipt_from_response(response, SITE)
    assert "msg-42" in caught.value.reason and "Result=" in caught.value.reason
