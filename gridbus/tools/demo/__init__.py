"""``gridbus demo``: the high-voltage new-installation flows, the retail-market flows, master data,
then the meter readings (flow 9).

By default on kombu's in-memory broker with SQLite and loopback SOAP stubs, so it needs nothing
but Python; with ``--broker amqp://...`` the same runs against RabbitMQ. The parts share
``tools.demo.common`` and do not import each other.
"""

from __future__ import annotations

import click

from gridbus.tools.demo.hv_install import run_high_voltage_demo
from gridbus.tools.demo.master_data import run_master_data_demo
from gridbus.tools.demo.readings import run_readings_demo
from gridbus.tools.demo.retail import run_retail_demo


def run_demo(broker_url: str = "memory://", passwords: dict[str, str] | None = None, echo=click.echo) -> bool:
    """The parts, one after the other; True when every expectation of each held."""
    high_voltage = run_high_voltage_demo(broker_url, passwords, echo)
    retail = run_retail_demo(broker_url, passwords or {}, echo)
    master = run_master_data_demo(broker_url, passwords or {}, echo)
    readings = run_readings_demo(broker_url, passwords or {}, echo)
    return high_voltage and retail and master and readings
