"""The pika publisher against the real RabbitMQ: examples arrive in the routes' work queues,
confirmed, with the properties the routes check."""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from kombu import Connection

from gridbus.contracts.identifiers import is_valid_credit_code
from gridbus.routes import ROUTES, route_by_name
from gridbus.workers.store import Store
from tests.conftest import (BROKER_HOST, SIM_VHOST, TEST_SOURCE_USERS, ensure_empty_vhost, import_definitions,
                            system_permissions)
from gridbus.workers import topology
from gridbus.tools import commands
from gridbus.tools.simulate import EXAMPLES_DIR, example_path, simulate

pytestmark = pytest.mark.broker

SYSTEMS = sorted({r.source.system for r in ROUTES if not r.source.internal})
#: What the upstream systems publish; gridbus sends its internal routes' messages itself.
PUBLISHED = tuple(r for r in ROUTES if not r.source.internal)


@pytest.fixture(scope="module")
def sim_vhost():
    """A vhost of this module's own with the real routes declared (their queue names are fixed)."""
    name = ensure_empty_vhost(SIM_VHOST)
    with Connection(f"amqp://guest:guest@{BROKER_HOST}:5672/{name}") as conn:
        topology.declare(conn.default_channel, topology.derive(ROUTES))
    return name


@pytest.fixture(scope="module")
def sim_url(sim_vhost) -> str:
    return f"amqp://guest:guest@{BROKER_HOST}:5672/{sim_vhost}"


@pytest.fixture(scope="module")
def credentials(sim_vhost, system_users):
    """The suite's own system users (never the real ones), allowed to publish in this vhost too."""
    import_definitions(permissions=system_permissions(sim_vhost, SYSTEMS))  # one rabbitmqctl call
    return {s: system_users[s] for s in SYSTEMS}


@pytest.fixture(autouse=True)
def source_users_env(monkeypatch):
    """The commands read GRIDBUS_SOURCE_USERS, as a deployment's would."""
    monkeypatch.setenv("GRIDBUS_SOURCE_USERS", json.dumps(TEST_SOURCE_USERS))


def take_all(url: str, queue: str, expected: int, timeout: float = 10.0) -> list:
    taken = []
    deadline = time.monotonic() + timeout
    with Connection(url) as conn:
        channel = conn.default_channel
        while len(taken) < expected and time.monotonic() < deadline:
            message = channel.basic_get(queue, no_ack=True)
            if message is None:
                time.sleep(0.02)
            else:
                taken.append(message)
        while (extra := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(extra)
    return taken


def test_examples_arrive_confirmed_with_the_routes_properties(sim_url, credentials):
    before = time.time()
    report = simulate(sim_url, ROUTES, user_credentials=credentials)

    assert report.ok and report.published == len(PUBLISHED)
    # grouped by system: one connection per system user
    assert sorted(r.route for r in report.routes) == sorted(r.name for r in PUBLISHED)
    by_name = {r.route: r for r in report.routes}
    for route, published in ((route, by_name[route.name]) for route in PUBLISHED):
        assert published.route == route.name and published.published == 1
        user = credentials[route.source.system][0]
        [message] = take_all(sim_url, route.work_queue, 1)
        props = message.properties
        assert message.body == example_path(route, EXAMPLES_DIR).read_bytes()
        assert props["message_id"] == published.message_ids[0]
        assert uuid.UUID(props["message_id"]).version == 4
        assert props["correlation_id"]
        assert props["type"] == route.contract.message_type
        is_json = message.body.lstrip().startswith(b"{")
        assert props["content_type"] == ("application/json" if is_json else "application/xml")
        assert props["delivery_mode"] == 2
        assert before - 1 <= props["timestamp"] <= time.time() + 1
        assert props["user_id"] == user
        assert message.delivery_info["exchange"] == route.source.exchange
        assert message.delivery_info["routing_key"] == route.source.routing_key


def test_variants_are_valid_and_distinct(sim_url, credentials):
    report = simulate(sim_url, ROUTES, count=3, user_credentials=credentials)

    assert report.ok and report.published == 3 * len(PUBLISHED)
    taken = {}
    for route in PUBLISHED:
        messages = take_all(sim_url, route.work_queue, 3)
        assert len(messages) == 3
        assert len({m.properties["message_id"] for m in messages}) == 3
        taken[route.name] = [route.contract.decode(m.body) for m in messages]
        business_keys = [route.trace_keys(d) if route.trace_keys else (d.application_no,) for d in taken[route.name]]
        assert len(set(business_keys)) == 3, route.name
    # Variant i of every route names the same objects, with credit codes that stay valid.
    archives = taken["tc.sales-company-archive-pushed"]
    reviews = taken["tc.user-unit-review-passed"]
    signings = taken["tc.tripartite-agreement-signed"]
    assert all(is_valid_credit_code(a.credit_code) for a in archives)
    assert sorted(a.credit_code for a in archives) == sorted(r.sales_company_credit_code for r in reviews)
    assert sorted(r.user_unit_id for r in reviews) == sorted(s.user_unit_id for s in signings)
    assert sorted(f"TA{r.period_start:%Y%m}-{r.user_unit_id}" for r in reviews) == sorted(s.agreement_no for s in signings)
    drafts = taken["mkt.agreement-draft-reviewed"]
    assert sorted((d.agreement_no, d.user_unit_id, d.sales_company_credit_code) for d in drafts) == sorted(
        (s.agreement_no, s.user_unit_id, s.sales_company_credit_code) for s in signings)


def test_master_data_variants_include_changes_their_sender_may_not_write(sim_url, credentials):
    routes = [route_by_name("pms.master-data-changed"), route_by_name("mkt.master-data-changed")]
    report = simulate(sim_url, routes, count=8, user_credentials=credentials)
    assert report.ok and report.published == 16
    store = Store("sqlite:///:memory:")
    for route in routes:
        changes = [route.contract.decode(m.body) for m in take_all(sim_url, route.work_queue, 8)]
        assert len({c.business_code for c in changes}) == 8 and len({c.change_order_no for c in changes}) == 8
        outcomes = []
        for change in changes:
            view = store.state.view()
            now = datetime.now(timezone.utc)
            decision = route.decide(change, view, now)
            assert store.state.commit_decision(route.name, str(uuid.uuid4()), decision, view.read, now)
            outcomes.append(decision.result.get("error") or decision.result["decision"])
        refusal = "write-not-permitted" if route.source.system == "pms" else "not-system-of-record"
        assert outcomes == ["accepted"] * 3 + [refusal] + ["accepted"] * 3 + [refusal], route.name


def test_as_guest_the_user_id_is_guest(sim_url):
    route = route_by_name("pms.black-map-published")
    report = simulate(sim_url, [route])
    assert report.ok and report.routes[0].user == "guest"
    [message] = take_all(sim_url, route.work_queue, 1)
    assert message.properties["user_id"] == "guest"


def test_route_without_an_example_is_skipped(sim_url, credentials, tmp_path: Path):
    report = simulate(sim_url, ROUTES, examples_dir=tmp_path, user_credentials=credentials)
    assert report.published == 0
    assert {r.skipped for r in report.routes} == {"no example message"}


def test_errors_are_reported_per_route(sim_url, credentials, fresh_broker_url):
    route = route_by_name("pms.black-map-published")

    wrong_password = simulate(sim_url, [route], user_credentials={"pms": (credentials["pms"][0], "wrong")})
    assert not wrong_password.ok and "refused the login" in wrong_password.routes[0].error

    other_system = simulate(sim_url, [route], user_credentials={"pms": credentials["mkt"]})
    assert not other_system.ok and "403 ACCESS_REFUSED" in other_system.routes[0].error

    no_topology = simulate(fresh_broker_url, [route])
    assert not no_topology.ok and "declare the topology" in no_topology.routes[0].error


def test_cli_needs_the_system_passwords_or_as_guest(sim_url, credentials, tmp_path: Path):
    route = route_by_name("cmd.plan-changed")
    runner = CliRunner()
    obj = {"routes": ROUTES}

    refused = runner.invoke(commands.simulate, ["--broker", sim_url, "--route", route.name], obj=obj)
    assert refused.exit_code == 2 and "--system-password" in refused.output

    as_guest = runner.invoke(commands.simulate, ["--broker", sim_url, "--route", route.name, "--as-guest"], obj=obj)
    assert as_guest.exit_code == 0, as_guest.output
    assert "unauthorised" in as_guest.output and "1 message(s) published" in as_guest.output

    take_all(sim_url, route.work_queue, 1)

    credentials_file = tmp_path / "users.json"
    credentials_file.write_text(json.dumps({"cmd": list(credentials["cmd"])}))
    as_system = runner.invoke(
        commands.simulate,
        ["--broker", sim_url, "--route", route.name, "--credentials-file", str(credentials_file), "--count", "2"],
        obj=obj,
    )
    assert as_system.exit_code == 0, as_system.output
    messages = take_all(sim_url, route.work_queue, 2)
    assert [m.properties["user_id"] for m in messages] == [credentials["cmd"][0]] * 2

    wrong = runner.invoke(
        commands.simulate, ["--broker", sim_url, "--route", route.name, "--system-password", "cmd=wrong"], obj=obj
    )
    assert wrong.exit_code == 1 and "refused the login" in wrong.output

    given = runner.invoke(
        commands.simulate,
        ["--broker", sim_url, "--route", route.name, "--system-password", f"cmd={credentials['cmd'][1]}"],
        obj=obj,
    )
    assert given.exit_code == 0, given.output
    [message] = take_all(sim_url, route.work_queue, 1)
    assert message.properties["user_id"] == TEST_SOURCE_USERS["cmd"]  # the mapped user, not "cmd"

    credentials_file.write_text(json.dumps({"cmd": ["cmd", "not-this-one"]}))
    other_user = runner.invoke(
        commands.simulate, ["--broker", sim_url, "--route", route.name, "--credentials-file", str(credentials_file)],
        obj=obj,
    )
    assert other_user.exit_code == 2 and "GRIDBUS_SOURCE_USERS" in other_user.output
    assert f"cmd as 'cmd', not {TEST_SOURCE_USERS['cmd']!r}" in other_user.output


def test_a_list_of_nodes_is_tried_in_turn(sim_url, credentials):
    """GRIDBUS_BROKER_URL may name several nodes (``a;b``): a node that is down is passed over."""
    route = route_by_name("pms.black-map-published")
    with socket.socket() as closed:  # a port nothing listens on once the socket is closed
        closed.bind(("127.0.0.1", 0))
        down = f"amqp://guest:guest@127.0.0.1:{closed.getsockname()[1]}/{SIM_VHOST}"
    report = simulate(f"{down};{sim_url}", [route], user_credentials=credentials)
    assert report.ok and report.published == 1
    [message] = take_all(sim_url, route.work_queue, 1)
    assert message.properties["message_id"] == report.routes[0].message_ids[0]


def test_readings_parts_of_a_chosen_size_with_a_share_of_bad_records(sim_url, credentials):
    from functools import partial

    from gridbus.contracts.mdc import DailyFrozenPublished
    from gridbus.mappings.readings import rules
    from gridbus.routes.meter_readings import DAILY_FROZEN_PUBLISHED as route
    from gridbus.tools.readings_batch import simulated_parts

    generators = {"DailyFrozenPublished": partial(simulated_parts, size=40, bad_share=0.25)}
    report = simulate(sim_url, [route], count=3, user_credentials=credentials, generators=generators)
    assert report.ok and report.published == 3
    parts = [DailyFrozenPublished.decode(m.body) for m in take_all(sim_url, route.work_queue, 3)]
    assert sorted(p.part_no for p in parts) == [1, 2, 3] and len({p.batch_id for p in parts}) == 1
    for part in parts:
        assert part.part_count == 3 and len(part.readings) == 40
        bad = [r for r in part.readings if any(check(r) for check in (rules.tariff_sum, rules.negative_values, rules.multiplier_valid))
               or rules.data_date_matches(r, part.data_date)]
        assert len(bad) == 10
