"""Publish as the upstream systems would: each system on a connection of its own user.

Written with pika rather than kombu on purpose: the upstream systems use other AMQP clients,
and this shows that what gridbus expects (``user_id``, ``message_id``, ``type``, persistent,
confirmed and mandatory publishes) is plain AMQP 0-9-1.

Each route's example message is ``<examples_dir>/<system>.<MessageType>.json`` or ``.xml``.
With ``count`` the example is varied into that many messages: new message ids, and for each
different business identifiers (application number, archive id, user unit, agreement number,
and a different valid credit code), so the route sees distinct business objects. Variant ``i``
of every route of one run names the same objects: the ``i``-th review is of the ``i``-th
company's user, and the ``i``-th draft review and signing result are for that user's agreement.
Master-data changes get distinct business codes and change orders, and every fourth variant is
one its sender may not write (a transformer of the other use, or an object type of the other
platform), which the route refuses with a FAILED reply to the sender.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pika
import pika.exceptions
from lxml import etree

from gridbus import contracts
from gridbus.contracts.identifiers import complete_credit_code, is_valid_credit_code
from gridbus.contracts.master_data import OBJECT_TYPES
from gridbus.routes.model import Route
from gridbus.workers.amqp import broker_nodes

EXAMPLES_DIR = contracts.EXAMPLES_DIR

#: Examples are small; anything bigger is not an example and is not parsed.
MAX_EXAMPLE_BYTES = 1024 * 1024

_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=False
)
_TRAILING_DIGITS = re.compile(r"^(.*?)(\d+)$")

#: Identifiers varied per copy: JSON keys and XML element names.
VARIED_JSON_KEYS = frozenset({"application_no", "business_code", "change_order_no", "agreement_no", "user_unit_id"})
CREDIT_CODE_JSON_KEYS = frozenset({"sales_company_credit_code"})
VARIED_XML_ELEMENTS = frozenset(
    {"ApplicationNo", "ArchiveId", "UserUnitId", "AgreementNo", "BusinessCode", "ChangeOrderNo", "BatchId"}
)
CREDIT_CODE_ELEMENTS = frozenset({"CreditCode", "SalesCompanyCreditCode"})
#: Every this many variants of a master-data change, one is a change its sender may not write.
REFUSED_MASTER_DATA_EVERY = 4


class SimulationError(Exception):
    """The simulation cannot start (bad example, unknown route); the message says what to fix."""


@dataclass
class RoutePublished:
    """What was published for one route, as whom; ``error`` says why it stopped, if it did."""

    route: str
    system: str
    user: str
    exchange: str
    routing_key: str
    message_ids: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None

    @property
    def published(self) -> int:
        return len(self.message_ids)


@dataclass
class SimulationReport:
    routes: list[RoutePublished] = field(default_factory=list)

    @property
    def published(self) -> int:
        return sum(r.published for r in self.routes)

    @property
    def ok(self) -> bool:
        return all(r.error is None for r in self.routes)


def simulate(
    broker_url: str,
    routes: Iterable[Route],
    *,
    count: int | None = None,
    examples_dir: Path | str = EXAMPLES_DIR,
    user_credentials: dict[str, tuple[str, str]] | None = None,
    generators: dict[str, Callable[[int, int], Iterable[bytes]]] | None = None,
) -> SimulationReport:
    """Publish each route's example (or ``count`` variants of it) to ``<system>.out``.

    ``user_credentials`` maps a system code to ``(user, password)``; a system without an entry
    publishes as the user of ``broker_url`` (guest in a test setup). ``user_id`` is always the
    connection's user, so the broker vouches for it; messages published as anyone but the
    route's system are dead-lettered by the route as unauthorised.

    ``generators`` maps a message type to ``(count, start) -> bodies`` that replace its example's
    variants (readings parts of a chosen size, ``readings_batch.simulated_parts``).
    """
    if count is not None and count < 1:
        raise SimulationError(f"count must be at least 1, got {count}")
    nodes = [pika.URLParameters(url) for url in broker_nodes(broker_url)]  # "a;b;c": pika tries each in turn
    report = SimulationReport()
    start = random.randrange(1, 10**6)  # one offset for every route: variant i names the same objects
    by_system: dict[str, list[tuple[Route, Path | None]]] = {}
    for route in routes:
        if route.source.internal:  # gridbus sends these itself, when a schedule falls due
            continue
        by_system.setdefault(route.source.system, []).append((route, example_path(route, Path(examples_dir))))
    for system, planned in by_system.items():
        params = [_parameters_for(node, (user_credentials or {}).get(system)) for node in nodes]
        user = params[0].credentials.username
        entries = [
            RoutePublished(r.name, system, user, r.source.exchange, publish_routing_key(r.source.routing_key))
            for r, _ in planned
        ]
        report.routes += entries
        for entry, (_, path) in zip(entries, planned):
            if path is None:
                entry.skipped = "no example message"
        todo = [(r, path, e) for (r, path), e in zip(planned, entries) if path is not None]
        if todo:
            _publish_system(params, todo, count, start, generators or {})
    return report


def example_path(route: Route, examples_dir: Path) -> Path | None:
    """``<system>.<MessageType>.json`` or ``.xml`` in ``examples_dir``, if there is one."""
    stem = f"{route.source.system}.{route.contract.message_type}"
    for suffix in (".json", ".xml"):
        path = examples_dir / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def publish_routing_key(binding_key: str) -> str:
    """A concrete routing key that matches the route's (possibly wildcard) binding key."""
    return ".".join("simulated" if word in ("*", "#") else word for word in binding_key.split("."))


def variants(body: bytes, kind: str, count: int | None, *, start: int | None = None) -> Iterator[bytes]:
    """The example itself (``count`` None), or ``count`` copies with distinct application numbers.

    Numbers ending in digits keep their prefix and width (``HV2026110300017`` ->
    ``HV2026110304242``); ``start`` fixes the first offset (random by default, so two runs do
    not reuse each other's numbers).
    """
    if count is None:
        yield body
        return
    offset = random.randrange(1, 10**6) if start is None else start
    for i in range(count):
        refused = i % REFUSED_MASTER_DATA_EVERY == REFUSED_MASTER_DATA_EVERY - 1
        yield _json_variant(body, offset + i, refused) if kind == "json" else _xml_variant(body, offset + i, refused)


def _publish_system(
    params: list[pika.ConnectionParameters], todo: list, count: int | None, start: int | None = None,
    generators: dict | None = None,
) -> None:
    try:
        connection = pika.BlockingConnection(params)
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError):
        for _, _, entry in todo:
            entry.error = (
                f"RabbitMQ refused the login of user {entry.user!r}: create the system users with "
                "`gridbus topology users` and pass their passwords"
            )
        return
    except Exception as exc:  # noqa: BLE001 - pika's handshake errors have no common base; all mean the same here
        for _, _, entry in todo:
            entry.error = f"cannot connect to RabbitMQ as {entry.user!r}: {exc!r}"
        return
    try:
        channel = None
        for position, (route, path, entry) in enumerate(todo):
            kind = path.suffix.lstrip(".")
            body = path.read_bytes()
            if len(body) > MAX_EXAMPLE_BYTES:
                entry.error = f"{path.name} is larger than {MAX_EXAMPLE_BYTES} bytes"
                continue
            try:
                if channel is None or channel.is_closed:
                    channel = connection.channel()
                    channel.confirm_delivery()
                generate = (generators or {}).get(route.contract.message_type)
                bodies = generate(count or 1, start or 0) if generate else variants(body, kind, count, start=start)
                for variant in bodies:
                    entry.message_ids.append(_publish(channel, route, entry, variant, kind))
            except pika.exceptions.ChannelClosedByBroker as exc:
                entry.error = _explain_channel_error(entry, exc)
            except pika.exceptions.UnroutableError:
                entry.error = (
                    f"no queue is bound to {entry.exchange} for {entry.routing_key}: "
                    "declare the topology first (`gridbus topology declare`)"
                )
            except pika.exceptions.NackError:
                entry.error = f"the broker refused a message of {entry.route} (nack): is the work queue full?"
            except (SimulationError, ValueError) as exc:
                entry.error = str(exc)
            except pika.exceptions.AMQPConnectionError as exc:
                entry.error = (
                    f"the connection was lost ({exc!r}) after {entry.published} confirmed message(s); "
                    "the unconfirmed one may or may not have arrived"
                )
                for _, _, later in todo[position + 1 :]:
                    later.error = "not published: the connection was lost"
                return
    finally:
        if connection.is_open:
            connection.close()


def _publish(channel, route: Route, entry: RoutePublished, body: bytes, kind: str) -> str:
    message_id = str(uuid.uuid4())
    properties = pika.BasicProperties(
        message_id=message_id,
        correlation_id=str(uuid.uuid4()),
        type=route.contract.message_type,
        content_type="application/json" if kind == "json" else "application/xml",
        delivery_mode=pika.DeliveryMode.Persistent,
        timestamp=int(time.time()),
        user_id=entry.user,
    )
    # With confirm_delivery each publish waits for the broker's ack and raises if returned or nacked.
    channel.basic_publish(entry.exchange, entry.routing_key, body, properties, mandatory=True)
    return message_id


def _explain_channel_error(entry: RoutePublished, exc: pika.exceptions.ChannelClosedByBroker) -> str:
    if exc.reply_code == 403:
        return (
            f"user {entry.user!r} may not publish to {entry.exchange} (403 ACCESS_REFUSED): "
            f"publish as the {entry.system!r} system user (`gridbus topology users`)"
        )
    if exc.reply_code == 406:
        return f"the broker refused the user_id {entry.user!r} (406 PRECONDITION_FAILED): {exc.reply_text}"
    if exc.reply_code == 404:
        return f"there is no exchange {entry.exchange}: declare the topology first (`gridbus topology declare`)"
    return f"the broker closed the channel ({exc.reply_code} {exc.reply_text})"


def _parameters_for(base: pika.URLParameters, credentials: tuple[str, str] | None) -> pika.ConnectionParameters:
    params = pika.ConnectionParameters(
        host=base.host,
        port=base.port,
        virtual_host=base.virtual_host,
        credentials=base.credentials if credentials is None else pika.PlainCredentials(*credentials),
        ssl_options=base.ssl_options,
        connection_attempts=1,
        socket_timeout=10,
        blocked_connection_timeout=30,
    )
    return params


def _bump(value: str, offset: int) -> str:
    match = _TRAILING_DIGITS.match(value)
    if not match:
        return f"{value}-{offset}"
    prefix, digits = match.groups()
    width = len(digits)
    return f"{prefix}{(int(digits) + offset) % 10**width:0{width}d}"


def _json_variant(body: bytes, offset: int, refused: bool = False) -> bytes:
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise SimulationError(f"example is not valid JSON: {exc}") from exc

    def vary(node):
        if isinstance(node, dict):
            return {
                key: _json_value(key, value, offset) if isinstance(value, str) else vary(value)
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [vary(v) for v in node]
        return node

    doc = vary(doc)
    if refused and isinstance(doc, dict) and doc.get("object_type") in OBJECT_TYPES:
        doc["object_type"], use = _not_the_sender_s(doc["object_type"], doc.get("transformer_use"))
        if use is not None:
            doc["transformer_use"] = use
    return json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")


def _json_value(key: str, value: str, offset: int) -> str:
    if key in VARIED_JSON_KEYS:
        return _bump(value, offset)
    if key in CREDIT_CODE_JSON_KEYS:
        return _vary_credit_code(value, offset)
    return value


def _xml_variant(body: bytes, offset: int, refused: bool = False) -> bytes:
    try:
        tree = etree.fromstring(body, _XML_PARSER).getroottree()
    except etree.XMLSyntaxError as exc:
        raise SimulationError(f"example is not well-formed XML: {exc}") from exc
    for element in tree.iter():
        if not isinstance(element.tag, str) or not element.text:
            continue
        name = etree.QName(element).localname
        if name in VARIED_XML_ELEMENTS:
            element.text = _bump(element.text.strip(), offset)
        elif name in CREDIT_CODE_ELEMENTS:
            element.text = _vary_credit_code(element.text.strip(), offset)
    if refused:
        _refused_master_data(tree.getroot())
    encoding = tree.docinfo.encoding or "UTF-8"
    return etree.tostring(tree, xml_declaration=True, encoding=encoding)


def _refused_master_data(root) -> None:
    """Make a master-data change one its sender may not write (other documents stay as they are)."""
    if etree.QName(root).localname != "MasterDataChanged":
        return
    namespace = etree.QName(root).namespace
    object_type, use = root.find(f"{{{namespace}}}ObjectType"), root.find(f"{{{namespace}}}TransformerUse")
    if object_type is None or object_type.text not in OBJECT_TYPES:
        return
    object_type.text, new_use = _not_the_sender_s(object_type.text, None if use is None else use.text)
    if use is not None:
        use.text = new_use


def _not_the_sender_s(object_type: str, use: str | None) -> tuple[str, str | None]:
    """A transformer of the other use (written by the other system), or a plain object type of
    the other platform: what the sender of ``object_type`` may not write."""
    if use is not None:
        return object_type, "dedicated" if use == "public" else "public"
    owner = OBJECT_TYPES[object_type].owner
    other = next(t for t in OBJECT_TYPES.values() if t.owner != owner and not t.relation and t.code != "transformer")
    return other.code, None


def _vary_credit_code(code: str, offset: int) -> str:
    """Another valid credit code of the same registration place; an invalid one stays as it is."""
    if not is_valid_credit_code(code) or not code[8:16].isdigit():
        return code
    return complete_credit_code(code[:8] + f"{(int(code[8:16]) + offset) % 10**8:08d}")
