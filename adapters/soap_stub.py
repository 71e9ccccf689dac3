"""A local SOAP peer for tests and the demo: a real HTTP server on loopback, with fault injection.

Generic over document/literal WSDLs that follow the gridbus peers' convention: operation ``X``
takes element ``XRequest`` (with a ``MessageID`` child) and returns element ``XResponse`` with
``Result`` and ``ReceiptID``. It behaves like the business systems are asked to: an idempotent
receiver that applies a ``MessageID`` once (``effects``) however often it is sent (``calls``).

Faults are injected from tests (``fail_next``, ``fail_for``, ``fail_when``) or, for a stub in
another process, over HTTP::

    POST /_control/faults   {"kind": "http503", "count": 2}  or  {"kind": "delay", "seconds": 10, "delay_s": 3}
    DELETE /_control/faults
    GET /_control/calls     GET /_control/effects

Fault kinds: http500, http503, http400 (plain-text HTTP errors), soap_server_fault,
soap_client_fault (SOAP 1.1 Fault, HTTP 500), delay (answer normally after ``delay_s``),
result_failed (a normal response with Result FAILED). Only ``delay`` requests are applied.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import signal
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lxml import etree

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
FAULT_KINDS = frozenset(
    {"http500", "http503", "http400", "soap_server_fault", "soap_client_fault", "delay", "result_failed"}
)
_HTTP_FAULTS = {"http500": "500 Internal Server Error", "http503": "503 Service Unavailable", "http400": "400 Bad Request"}
MAX_REQUEST_BYTES = 1 << 20

_parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

Payload = dict[str, Any]
Predicate = Callable[[Payload], bool]


@dataclass(frozen=True)
class Call:
    """One request as received. ``applied`` is False when an injected fault answered it."""

    operation: str
    message_id: str | None
    payload: Payload
    received_at: datetime
    outcome: str = "ok"
    applied: bool = True
    username: str | None = None
    receipt_id: str | None = None


class _Faults:
    """Pending injected faults, in the order they are consulted: when, next, for."""

    def __init__(self) -> None:
        self.when: list[tuple[Predicate, str]] = []
        self.next: list[list[Any]] = []  # [kind, remaining]
        self.until: list[tuple[float, str]] = []

    def pick(self, payload: Payload) -> str | None:
        for predicate, kind in self.when:
            if predicate(payload):
                return kind
        if self.next:
            entry = self.next[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self.next.pop(0)
            return entry[0]
        now = time.monotonic()
        self.until = [(deadline, kind) for deadline, kind in self.until if deadline > now]
        return self.until[0][1] if self.until else None


def _check_kind(kind: str) -> str:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}")
    return kind


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) is expected here


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class SoapStub:
    """A SOAP peer for ``wsdl_path`` served at ``http://host:port/path`` (WSDL at ``url + "?wsdl"``).

    users: when given (username -> password), requests must carry a valid WS-Security
        UsernameToken (digest or text); others get a Client fault.
    delay_s: how long a ``delay`` fault holds the answer, in seconds.
    """

    def __init__(
        self,
        wsdl_path: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/cmd",
        *,
        users: dict[str, str] | None = None,
        delay_s: float = 5.0,
    ):
        self.wsdl_path = Path(wsdl_path)
        self.host, self.port, self.path = host, port, "/" + path.strip("/")
        self.users = users
        self.delay_s = delay_s
        self.wsdl_requests = 0
        self._calls: list[Call] = []
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        wsdl = etree.parse(str(self.wsdl_path), _parser)
        self.operations = frozenset(wsdl.xpath("//wsdl:portType/wsdl:operation/@name", namespaces={"wsdl": WSDL_NS}))
        self._list_elements = frozenset(
            wsdl.xpath("//xsd:element[@maxOccurs and @maxOccurs != '1']/@name", namespaces={"xsd": XSD_NS})
        )

    # -- life cycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"

    def start(self) -> SoapStub:
        self._stopping.clear()
        self._httpd = make_server(self.host, self.port, self._app, server_class=_Server, handler_class=_QuietHandler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"soap-stub{self.path}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> SoapStub:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- what was received

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def effects(self, operation: str | None = None) -> list[Call]:
        """Applied calls, one per MessageID (the first one wins)."""
        seen: set[str | None] = set()
        applied = []
        for call in self.calls:
            if call.applied and call.message_id not in seen and operation in (None, call.operation):
                seen.add(call.message_id)
                applied.append(call)
        return applied

    def reset(self) -> None:
        """Forget calls and faults."""
        with self._lock:
            self._calls.clear()
            self._faults = _Faults()

    # -- fault injection

    def fail_next(self, n: int, kind: str) -> None:
        with self._lock:
            self._faults.next.append([_check_kind(kind), n])

    def fail_for(self, seconds: float, kind: str) -> None:
        with self._lock:
            self._faults.until.append((time.monotonic() + seconds, _check_kind(kind)))

    def fail_when(self, predicate: Predicate, kind: str) -> None:
        """Answer with ``kind`` every request whose payload satisfies ``predicate``, until cleared."""
        with self._lock:
            self._faults.when.append((predicate, _check_kind(kind)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    # -- HTTP

    def _app(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        try:
            if path.startswith("/_control/"):
                status, ctype, body = self._control(method, path, environ)
            elif path == self.path and method == "GET" and "wsdl" in parse_qs(environ.get("QUERY_STRING", ""), True):
                status, ctype, body = "200 OK", "text/xml; charset=utf-8", self._wsdl_text()
            elif path == self.path and method == "POST":
                status, ctype, body = self._soap(_read_body(environ))
            else:
                status, ctype, body = "404 Not Found", "text/plain; charset=utf-8", b"not found"
        except _TooLarge:
            status, ctype, body = "413 Payload Too Large", "text/plain; charset=utf-8", b"request too large"
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def _wsdl_text(self) -> bytes:
        with self._lock:
            self.wsdl_requests += 1
        doc = etree.parse(str(self.wsdl_path), _parser)
        for address in doc.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address"):
            address.set("location", self.url)
        return etree.tostring(doc, xml_declaration=True, encoding="UTF-8")

    def _control(self, method: str, path: str, environ: dict) -> tuple[str, str, bytes]:
        ok = "200 OK", "application/json"
        if path == "/_control/faults" and method == "POST":
            try:
                spec = json.loads(_read_body(environ) or b"{}")
                if "delay_s" in spec:
                    self.delay_s = float(spec["delay_s"])
                if "seconds" in spec:
                    self.fail_for(float(spec["seconds"]), spec["kind"])
                else:
                    self.fail_next(int(spec.get("count", 1)), spec["kind"])
            except (ValueError, KeyError, TypeError) as exc:
                return "400 Bad Request", "application/json", json.dumps({"error": str(exc)}).encode()
            return (*ok, b'{"ok": true}')
        if path == "/_control/faults" and method == "DELETE":
            self.clear_faults()
            return (*ok, b'{"ok": true}')
        if path in ("/_control/calls", "/_control/effects") and method == "GET":
            calls = self.calls if path.endswith("calls") else self.effects()
            return (*ok, json.dumps([asdict(c) for c in calls], default=_json_default, ensure_ascii=False).encode())
        return "404 Not Found", "application/json", b'{"error": "no such control"}'

    def _soap(self, body: bytes) -> tuple[str, str, bytes]:
        received_at = datetime.now(timezone.utc)
        try:
            envelope = etree.fromstring(body, _parser)
        except etree.XMLSyntaxError as exc:
            return _fault("Client", f"malformed XML: {exc}")
        request = envelope.find(f"{{{SOAP11_NS}}}Body/*")
        if request is None:
            return _fault("Client", "no SOAP 1.1 Body element")
        name = etree.QName(request).localname
        operation = name.removesuffix("Request")
        if operation == name or operation not in self.operations:
            return _fault("Client", f"no operation takes element {name}")
        payload = self._to_value(request) or {}
        message_id = payload.get("MessageID") if isinstance(payload, dict) else None
        username, auth_error = self._authenticate(envelope)
        if auth_error:
            self._record(Call(operation, message_id, payload, received_at, "auth_failed", False, username))
            return _fault("Client", f"FailedAuthentication: {auth_error}")

        with self._lock:
            kind = self._faults.pick(payload)
        if kind == "delay":
            self._stopping.wait(self.delay_s)
        elif kind is not None:
            self._record(Call(operation, message_id, payload, received_at, kind, False, username))
            if kind in _HTTP_FAULTS:
                return _HTTP_FAULTS[kind], "text/plain; charset=utf-8", f"injected {kind}".encode()
            if kind == "soap_server_fault":
                return _fault("Server", f"injected server fault for {operation} {message_id}")
            if kind == "soap_client_fault":
                return _fault("Client", f"injected client fault: {operation} {message_id} rejected")
            return _response(request, operation, "FAILED", None)
        receipt_id = self._apply(Call(operation, message_id, payload, received_at, kind or "ok", True, username))
        return _response(request, operation, "OK", receipt_id)

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _apply(self, call: Call) -> str:
        """Record an applied call; a repeated MessageID gets the receipt of its first application."""
        with self._lock:
            first = next(
                (c for c in self._calls if c.applied and c.message_id == call.message_id and c.message_id is not None),
                None,
            )
            receipt_id = first.receipt_id if first else f"R-{uuid.uuid4().hex[:16]}"
            self._calls.append(Call(**{**asdict(call), "receipt_id": receipt_id}))
            return receipt_id

    def _authenticate(self, envelope: etree._Element) -> tuple[str | None, str | None]:
        token = envelope.find(f"{{{SOAP11_NS}}}Header/{{{WSSE_NS}}}Security/{{{WSSE_NS}}}UsernameToken")
        username = token.findtext(f"{{{WSSE_NS}}}Username") if token is not None else None
        if self.users is None:
            return username, None
        if token is None or username not in self.users:
            return username, "no UsernameToken for a known user"
        password = token.find(f"{{{WSSE_NS}}}Password")
        given = (password.text or "") if password is not None else ""
        expected = self.users[username]
        if password is not None and password.get("Type", "").endswith("#PasswordDigest"):
            nonce = base64.b64decode(token.findtext(f"{{{WSSE_NS}}}Nonce") or "")
            created = token.findtext(f"{{{WSU_NS}}}Created") or ""
            expected = base64.b64encode(hashlib.sha1(nonce + created.encode() + expected.encode()).digest()).decode()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return username, "wrong password"
        return username, None

    def _to_value(self, element: etree._Element) -> Any:
        """Text for a leaf; for a parent, a dict of its children (a list for repeatable ones)."""
        children = [c for c in element if isinstance(c.tag, str)]
        if not children:
            return element.text
        value: dict[str, Any] = {}
        for child in children:
            name = etree.QName(child).localname
            item = self._to_value(child)
            if name in self._list_elements:
                value.setdefault(name, []).append(item)
            elif name in value:
                value[name] = [*value[name], item] if isinstance(value[name], list) else [value[name], item]
            else:
                value[name] = item
        return value


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class _TooLarge(Exception):
    pass


def _read_body(environ: dict) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_REQUEST_BYTES:
        raise _TooLarge()
    return environ["wsgi.input"].read(length) if length else b""


def _envelope(content: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
    etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body").append(content)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _response(request: etree._Element, operation: str, result: str, receipt_id: str | None) -> tuple[str, str, bytes]:
    namespace = etree.QName(request).namespace
    first_child = next((c for c in request if isinstance(c.tag, str)), None)
    # Children are qualified exactly when the request's were (the schema's elementFormDefault).
    child_ns = etree.QName(first_child).namespace if first_child is not None else namespace
    response = etree.Element(etree.QName(namespace, f"{operation}Response"), nsmap={"tns": namespace})
    etree.SubElement(response, etree.QName(child_ns, "Result")).text = result
    if receipt_id is not None:
        etree.SubElement(response, etree.QName(child_ns, "ReceiptID")).text = receipt_id
    return "200 OK", "text/xml; charset=utf-8", _envelope(response)


def _fault(code: str, message: str) -> tuple[str, str, bytes]:
    fault = etree.Element(f"{{{SOAP11_NS}}}Fault", nsmap={"soap": SOAP11_NS})
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = message
    return "500 Internal Server Error", "text/xml; charset=utf-8", _envelope(fault)


def run_stub(wsdl_path: str | Path, port: int, path: str, host: str = "127.0.0.1") -> None:
    """Serve a stub until SIGINT or SIGTERM (for ``gridbus stub``)."""
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with SoapStub(wsdl_path, host=host, port=port, path=path) as stub:
            print(f"SOAP stub for {Path(wsdl_path).name} at {stub.url} (WSDL at {stub.url}?wsdl)", flush=True)
            while not done.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
