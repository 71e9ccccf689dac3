"""The first part of ``gridbus demo``: the four high-voltage new-installation flows end to end,
in one process (the retail-market flows follow, ``tools.demo.retail``).

By default on kombu's in-memory broker with SQLite and the loopback command-center SOAP stub,
so it needs nothing but Python. With ``--broker amqp://...`` the same runs against RabbitMQ
(the upstream systems' RabbitMQ users, named by ``GRIDBUS_SOURCE_USERS``, must exist:
``gridbus topology users``).

The demo publishes the example messages as the upstream systems would, including a repeat, an
energization time whose revisions arrive 1, 3, 2, a GBK-encoded black map, and a malformed one;
makes the command center fail for a while; and then checks what arrived where. It exits 0 only
when every expectation holds.
"""

from __future__ import annotations

import json
import tempfile
import threading
import uuid
from dataclasses import dataclass, field

from gridbus.adapters.soap_stub import SoapStub
from gridbus.contracts.soap import peer_wsdl
from gridbus.routes import hv_install
from gridbus.routes.hv_install import BLACK_MAP_PUBLISHED, ENERGIZATION_TIME_SET, PLAN_CHANGED, SUPPLY_PLAN_PUSHED
from gridbus.tools.demo.common import (
    DEMO_RETRY,
    collect,
    declare_with_events_tap,
    example_body,
    publish_as_source,
    wait_settled,
)
from gridbus.workers.bootstrap import build_worker
from gridbus.workers.settings import Settings
from gridbus.workers.store import Store


@dataclass
class Sent:
    route: str
    message_id: str
    note: str


@dataclass
class Scenario:
    sent: list[Sent] = field(default_factory=list)


def _with_revision(revision: int) -> bytes:
    doc = json.loads(example_body("mkt.EnergizationTimeSet.json"))
    doc["revision"] = revision
    doc["intended_energization_time"] = f"2026-12-{17 + revision:02d}T09:30:00+08:00"
    return json.dumps(doc, ensure_ascii=False).encode()


def _publish_all(broker_url: str, passwords: dict[str, str], usernames: dict[str, str]) -> Scenario:
    """Publish as the upstream systems: each system on its own connection, user_id set."""
    scenario = Scenario()
    plan = [
        (SUPPLY_PLAN_PUSHED, example_body("mkt.SupplyPlanPushed.json"), "supply plan", None),
        (SUPPLY_PLAN_PUSHED, None, "the same supply plan again (a repeat)", "repeat"),
        (ENERGIZATION_TIME_SET, _with_revision(1), "energization time revision 1", None),
        (ENERGIZATION_TIME_SET, _with_revision(3), "energization time revision 3", None),
        (ENERGIZATION_TIME_SET, _with_revision(2), "energization time revision 2, arriving late", None),
        (BLACK_MAP_PUBLISHED, example_body("pms.BlackMapPublished.xml"), "black map (UTF-8)", None),
        (
            BLACK_MAP_PUBLISHED,
            example_body("pms.BlackMapPublished.gbk.xml").replace(b"<GraphVersion>3<", b"<GraphVersion>4<"),
            "black map graph version 4 (GBK, declared)",
            None,
        ),
        (
            BLACK_MAP_PUBLISHED,
            example_body("pms.BlackMapPublished.xml").replace(b"black-map:1", b"black-map:2"),
            "black map in an unknown version 2 namespace",
            None,
        ),
        (PLAN_CHANGED, example_body("cmd.PlanChanged.xml"), "plan change", None),
    ]
    last_id = None
    for route, body, note, special in plan:
        if special == "repeat":
            message_id, body = last_id
        else:
            message_id = str(uuid.uuid4())
        publish_as_source(broker_url, passwords, route, body, message_id, usernames)
        last_id = (message_id, body)
        scenario.sent.append(Sent(route.name, message_id, note))
    return scenario


def run_high_voltage_demo(broker_url: str, passwords: dict[str, str] | None, echo) -> bool:
    routes = tuple(_fast(r) if r.source.system == "mkt" else r for r in hv_install.ROUTES)
    with tempfile.TemporaryDirectory(prefix="gridbus-demo-") as tmp, SoapStub(peer_wsdl("cmd"), path="/cmd") as stub:
        settings = Settings(
            broker_url=broker_url, store_url=f"sqlite:///{tmp}/store.sqlite3", soap_peers={"cmd": stub.url}
        )
        store = Store(settings.store_url)
        events_tap = declare_with_events_tap(broker_url, routes)
        worker = build_worker(settings, routes, store=store, declare=False)
        # The command center is down for its first call (the supply plan's): that attempt fails,
        # the broker holds the message for the back-off, and the next attempt succeeds.
        stub.fail_next(1, "http503")
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        echo(f"gridbus demo on {broker_url.split('@')[-1]}; command center SOAP stub at {stub.url}")
        scenario = _publish_all(broker_url, passwords or {}, settings.source_user_names())
        for s in scenario.sent:
            echo(f"  published  {s.route:<28} {s.note}")
        wait_settled(worker, len(scenario.sent), echo, timeout_s=60)
        worker.stop()
        thread.join(10)
        inbox, events, dead = collect(broker_url, routes, events_tap)
        return _report(echo, worker.counts, stub, inbox, events, dead)


def _fast(route):
    from dataclasses import replace

    return replace(route, retry=DEMO_RETRY)


def _report(echo, counts, stub, inbox, events, dead) -> bool:
    echo("\noutcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    echo("command center (SOAP) applied:")
    for call in stub.effects():
        extra = f" revision {call.payload.get('Revision')}" if call.operation == "ReceiveEnergizationTime" else ""
        echo(f"  {call.operation}{extra}")
    echo(f"  ({len(stub.calls)} calls in all, {len(stub.calls) - len(stub.effects())} of them refused or repeated)")
    echo("marketing inbox (AMQP):")
    for m in inbox:
        echo(f"  {m.properties.get('type')}: {m.body.decode('utf-8')[:110]}")
    echo("canonical events:")
    for m in events:
        echo(f"  {m.delivery_info.get('routing_key')}")
    echo("dead letters:")
    for m in dead:
        echo(f"  {m.headers.get('x-gridbus-route')}: [{m.headers.get('x-gridbus-error-type')}] {m.headers.get('x-gridbus-error')}")
    revisions = [c.payload.get("Revision") for c in stub.effects("ReceiveEnergizationTime")]
    checks = {
        "supply plan applied once despite the repeat": len(stub.effects("ReceiveSupplyPlan")) == 1,
        "energization revisions 1 and 3 applied, 2 superseded": [str(r) for r in revisions] == ["1", "3"],
        "a retry held by the broker, then success": counts.get("retry-scheduled", 0) >= 1,
        "both black maps (UTF-8 and GBK) noticed to marketing": sum(
            m.properties.get("type") == "BlackMapNotice" for m in inbox
        ) == 2,
        "GBK Chinese text intact": any("文一变" in m.body.decode("utf-8") for m in inbox),
        "plan change noticed to marketing": any(m.properties.get("type") == "PlanChangeNotice" for m in inbox),
        "one dead letter, with its reason": len(dead) == 1
        and dead[0].headers.get("x-gridbus-error-type") == "contract-violation",
        "canonical events published": len(events) >= 5,
    }
    echo("checks:")
    for name, ok in checks.items():
        echo(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return all(checks.values())
