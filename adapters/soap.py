"""Delivery to SOAP peers (command center, trading center) through zeep.

One ``SoapAdapter`` per configured peer (``PeerSettings.soap_peers``). It builds its zeep
``Client`` once, on first use, from the WSDL shipped in ``contracts/<peer>/`` (never fetched from
the peer), with our own ``requests.Session`` for connection reuse and an operation timeout that
is always set.

An output with many items of one kind may offer ``to_soap_bulk() -> (kwargs, element)``: zeep
serialises ``kwargs`` (the list cut to its first item) and the element, built by the contract,
replaces that child before the envelope is sent (``_BulkElement``).

A delivery succeeds when the peer answers ``Result`` = ``OK``. Every failure is turned into
``TransientDeliveryError`` (retrying can help: timeout, refused connection, HTTP 5xx, SOAP
Server fault) or ``PermanentDeliveryError`` (retrying cannot help: SOAP Client fault, HTTP 4xx,
a request that does not fit the WSDL, ``Result`` other than ``OK``); see ``classify_soap_error``.
Retries are safe because the request carries the outbound ``MessageID``, stable across retries,
and the peers apply a ``MessageID`` once.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import requests
import zeep.exceptions
from zeep import Client, Plugin, Settings
from zeep.proxy import ServiceProxy
from zeep.transports import Transport
from zeep.wsse.username import UsernameToken

from gridbus.contracts.base import MappingContext
from gridbus.contracts.errors import GridbusError, PermanentDeliveryError, TransientDeliveryError
from gridbus.contracts.soap import peer_wsdl

#: SOAP 1.1 ``Server`` / SOAP 1.2 ``Receiver``: the peer failed on its side.
SERVER_FAULT_CODES = frozenset({"Server", "Receiver"})
#: 4xx statuses that say "later" rather than "never".
TRANSIENT_HTTP_4XX = frozenset({408, 425, 429})
#: Longest fault string or exception text copied into a reason.
_MAX_DETAIL = 400


@dataclass(frozen=True)
class SoapCallSite:
    """Where a delivery happened: what every failure reason names."""

    operation: str
    endpoint: str
    message_id: str

    def __str__(self) -> str:
        return f"SOAP {self.operation} to {self.endpoint} for message {self.message_id}"


@dataclass(frozen=True)
class SoapReceipt:
    """What the peer answered to an accepted request."""

    operation: str
    message_id: str
    result: str
    receipt_id: str | None


def fault_code_name(code: str | None) -> str:
    """The bare fault code: ``soap:Server.Busy`` -> ``Server``, ``env:Receiver`` -> ``Receiver``."""
    if not code:
        return ""
    local = code.rsplit("}", 1)[-1].rsplit(":", 1)[-1]
    return local.split(".", 1)[0].strip()


def _short(text: object) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_DETAIL else text[:_MAX_DETAIL] + "..."


def classify_soap_error(exc: BaseException, site: SoapCallSite) -> GridbusError | None:
    """Turn what zeep or requests raised into the error that decides the message's fate.

    Returns None for exceptions that are not about the delivery (bugs): let them propagate.
    """
    if isinstance(exc, zeep.exceptions.Fault):
        code = exc.code or "(no faultcode)"
        detail = f"SOAP Fault {code}: {_short(exc.message)}"
        if fault_code_name(exc.code) in SERVER_FAULT_CODES:
            return TransientDeliveryError(f"{site} failed: {detail}; the peer failed on its side, will retry")
        if not exc.code:
            # A fault without a code is not SOAP 1.1 we can reason about: retry, bounded by the route.
            return TransientDeliveryError(f"{site} failed: {detail}; unrecognised fault, will retry")
        return PermanentDeliveryError(
            f"{site} refused: {detail}; fix the message or the mapping, then replay it from the dead-letter queue"
        )
    if isinstance(exc, zeep.exceptions.TransportError):
        status = exc.status_code
        if 400 <= status < 500 and status not in TRANSIENT_HTTP_4XX:
            return PermanentDeliveryError(
                f"{site} refused: HTTP {status}: {_short(exc.message)}; check the endpoint and the request"
            )
        return TransientDeliveryError(f"{site} failed: HTTP {status}: {_short(exc.message)}; will retry")
    if isinstance(exc, zeep.exceptions.ValidationError):
        return PermanentDeliveryError(
            f"{site} not sent: the request does not fit the WSDL: {_short(exc)}; fix the mapping"
        )
    if isinstance(exc, (zeep.exceptions.XMLParseError, zeep.exceptions.UnexpectedElementError)):
        return PermanentDeliveryError(
            f"{site}: the peer's response does not fit the WSDL: {_short(exc.message)}; "
            "check that both sides use the same WSDL version"
        )
    if isinstance(exc, zeep.exceptions.XMLSyntaxError):
        return TransientDeliveryError(f"{site} failed: the peer answered malformed XML: {_short(exc.message)}")
    if isinstance(exc, requests.Timeout):
        return TransientDeliveryError(
            f"{site} failed: no answer in time ({type(exc).__name__}); the peer may have applied it, "
            "the retry carries the same MessageID"
        )
    if isinstance(exc, requests.ConnectionError):
        return TransientDeliveryError(f"{site} failed: cannot reach the peer: {_short(exc)}")
    if isinstance(exc, requests.RequestException):
        return TransientDeliveryError(f"{site} failed: {type(exc).__name__}: {_short(exc)}")
    if isinstance(exc, (TypeError, ValueError)):
        # zeep raises these while serialising kwargs that the operation does not declare.
        return PermanentDeliveryError(
            f"{site} not sent: the request does not fit the WSDL: {_short(exc)}; fix the mapping"
        )
    return None


def receipt_from_response(response: Any, site: SoapCallSite) -> SoapReceipt:
    """Check the ``XResponse`` (Result, ReceiptID); anything but ``Result`` = ``OK`` is a refusal."""
    result = _field(response, "Result")
    receipt_id = _field(response, "ReceiptID")
    if result != "OK":
        raise PermanentDeliveryError(
            f"{site} refused: the peer answered Result={result!r} (ReceiptID {receipt_id!r}); "
            "ask the peer's operators why, then replay it from the dead-letter queue"
        )
    return SoapReceipt(site.operation, site.message_id, result, receipt_id)


def _field(response: Any, name: str) -> Any:
    if response is None:
        return None
    try:
        return response[name]
    except (KeyError, TypeError, IndexError, AttributeError):
        return getattr(response, name, None)


#: The element a bulk request (``to_soap_bulk``) puts into the envelope zeep built, during its call.
_BULK_ELEMENT: ContextVar[Any] = ContextVar("gridbus_soap_bulk_element", default=None)


class _BulkElement(Plugin):
    """Puts a bulk request's prebuilt element in place of the child of the same name that zeep
    serialised (with one item) in the request wrapper, before WS-Security signs the envelope and
    the transport posts it: the call, its faults and its receipt stay zeep's."""

    def egress(self, envelope, http_headers, operation, binding_options):
        element = _BULK_ELEMENT.get()
        if element is not None:
            [wrapper] = envelope.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")
            wrapper.replace(wrapper.find(element.tag), element)
        return envelope, http_headers


class SoapAdapter:
    """Delivers outputs that offer ``to_soap() -> dict`` to one SOAP peer.

    wsdl_path: the peer's WSDL in ``contracts/``; its single binding is used.
    endpoint_url: where requests go (replaces the WSDL's placeholder soap:address).
    timeout_s: timeout of one operation, in seconds (connect and each read).
    username/password: WS-Security UsernameToken with password digest, when username is set.
    """

    def __init__(
        self,
        name: str,
        wsdl_path: str | Path,
        endpoint_url: str,
        *,
        timeout_s: float,
        username: str | None = None,
        password: str | None = None,
    ):
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"SOAP adapter {name!r}: timeout_s must be a positive number of seconds")
        self.name = name
        self.wsdl_path = Path(wsdl_path)
        self.endpoint_url = endpoint_url
        self.timeout_s = float(timeout_s)
        self._username = username
        self._password = password
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._service: ServiceProxy | None = None

    def load(self) -> None:
        """Parse the WSDL now (start-up), rather than on the first delivery."""
        self._service_proxy()

    def _service_proxy(self) -> ServiceProxy:
        with self._lock:
            if self._service is None:
                session = requests.Session()
                transport = Transport(session=session, timeout=self.timeout_s, operation_timeout=self.timeout_s)
                wsse = UsernameToken(self._username, self._password, use_digest=True) if self._username else None
                client = Client(
                    wsdl=str(self.wsdl_path),
                    transport=transport,
                    wsse=wsse,
                    plugins=[_BulkElement()],
                    settings=Settings(strict=True, forbid_dtd=True, forbid_entities=True, xml_huge_tree=False),
                )
                bindings = list(client.wsdl.bindings)
                if len(bindings) != 1:
                    raise ValueError(f"{self.wsdl_path}: expected one binding, found {bindings}")
                self._service = client.create_service(bindings[0], self.endpoint_url)
                self._session = session
            return self._service

    def call(self, operation: str, output: Any, context: MappingContext) -> SoapReceipt:
        """Deliver and return what the peer answered; raises the delivery errors described above."""
        site = SoapCallSite(operation, self.endpoint_url, context.message_id)
        service = self._service_proxy()
        try:
            send = service[operation]
        except AttributeError:
            known = sorted(name for name, _ in service)
            raise PermanentDeliveryError(
                f"{site} not sent: {self.wsdl_path.name} has no operation {operation!r} "
                f"(it has {known}); fix the route's target"
            ) from None
        bulk = getattr(output, "to_soap_bulk", None)
        kwargs, element = bulk() if bulk is not None else (output.to_soap(), None)
        token = _BULK_ELEMENT.set(element)
        try:
            response = send(**kwargs)
        except Exception as exc:
            error = classify_soap_error(exc, site)
            if error is None:
                raise
            raise error from exc
        finally:
            _BULK_ELEMENT.reset(token)
        return receipt_from_response(response, site)

    def deliver(self, operation: str, output: Any, context: MappingContext) -> None:
        self.call(operation, output, context)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._session = None
            self._service = None


class PeerSettings(Protocol):
    """The settings the SOAP adapters are built from, handed in at bootstrap: each peer's endpoint
    URL by peer name, and the timeout and WS-Security user the peers share."""

    soap_peers: dict[str, str]
    soap_timeout_s: float
    soap_username: str | None
    soap_password: str | None


def build_soap_adapters(settings: PeerSettings) -> dict[str, SoapAdapter]:
    """One adapter per peer in ``settings.soap_peers``, on the WSDL in its ``contracts/<peer>/``
    folder (a peer without one is a ValueError naming it); nothing is loaded or connected yet."""
    return {
        name: SoapAdapter(
            name,
            peer_wsdl(name),
            url,
            timeout_s=settings.soap_timeout_s,
            username=settings.soap_username,
            password=settings.soap_password,
        )
        for name, url in settings.soap_peers.items()
    }
