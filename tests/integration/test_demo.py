"""The main job: ``gridbus demo`` on the embedded broker, and the same against RabbitMQ."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TEST_SOURCE_USERS
from gridbus.tools.demo import retail, run_demo


def test_demo_on_the_embedded_broker_passes_every_check():
    lines: list[str] = []
    assert run_demo("memory://", echo=lambda text="", **_: lines.append(text))
    report = "\n".join(lines)
    assert "[FAILED]" not in report
    assert "ReceiveEnergizationTime revision 1" in report and "ReceiveEnergizationTime revision 3" in report
    assert "[contract-violation]" in report
    # the retail market: Fig. 9's code refused with its reason, the schedule set, fired by the moved clock
    assert "FIG9-01 [credit-code-length] CreditCode: 18 characters expected, got 15" in report
    trace = report[report.index("trace of user unit RU2026110002"):]
    assert trace.index(" scheduled ") < trace.index(" fired ") < trace.index("ownership-established")
    # master data: marketing's change of a substation refused, answered in its inbox, traced
    assert "mkt.in  Substation        FAILED [not-system-of-record] SUB-330106-0001 (idAuthority pms)" in report
    assert "data middle platform inbox (dmp.in):\n  PowerTransformer.created\n  UsagePoint.created" in report


@pytest.fixture
def source_users_env(monkeypatch):
    """The demo's worker and publishers read GRIDBUS_SOURCE_USERS, as a deployment's would."""
    monkeypatch.setenv("GRIDBUS_SOURCE_USERS", json.dumps(TEST_SOURCE_USERS))


@pytest.mark.broker
def test_demo_against_rabbitmq_with_the_systems_own_users(broker_url, system_users, source_users_env):
    lines: list[str] = []
    passwords = {system: password for system, (_, password) in system_users.items()}
    assert run_demo(broker_url, passwords, echo=lambda text="", **_: lines.append(text)), "\n".join(lines)


@pytest.mark.broker
def test_demo_without_a_system_s_password_is_refused_by_its_routes_not_lost(broker_url, source_users_env, monkeypatch):
    """Published as the URL's user, the messages reach the routes, which dead-letter them as not
    published by their source system; the demo reports that and fails. (The retail part still
    waits for the ownership schedule its refused messages never set: here 3 s, not its 30 s.)"""
    lines: list[str] = []
    settle = retail.wait_settled

    def wait_settled(worker, count, echo, timeout_s):
        clock_moved = any("the clock moves on" in line for line in lines)
        return settle(worker, count, echo, timeout_s=3 if clock_moved else timeout_s)

    monkeypatch.setattr(retail, "wait_settled", wait_settled)
    assert not run_demo(broker_url, {}, echo=lambda text="", **_: lines.append(text))
    # the one wait that ran out is the one for the schedule that was never set
    assert [line for line in lines if "did not settle" in line] == ["the demo did not settle within 3 s"]
    report = "\n".join(lines)
    assert "did not settle within 60 s" not in report  # the high-voltage part: every message has its outcome
    assert (
        "mkt.supply-plan-pushed: [unauthorised] published by 'guest', but route mkt.supply-plan-pushed accepts only "
        f"system 'mkt' as user {TEST_SOURCE_USERS['mkt']!r}"
    ) in report
    assert "pms.black-map-published: [unauthorised]" in report and "cmd.plan-changed: [unauthorised]" in report
