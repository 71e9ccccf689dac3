"""The main job: ``gridbus demo`` on the embedded broker, and the same against RabbitMQ."""

from __future__ import annotations

import pytest

from workers.demo import run_demo


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


@pytest.mark.broker
def test_demo_against_rabbitmq_with_the_systems_own_users(broker_url, system_users):
    lines: list[str] = []
    passwords = {system: password for system, (_, password) in system_users.items()}
    assert run_demo(broker_url, passwords, echo=lambda text="", **_: lines.append(text)), "\n".join(lines)
