"""Fixtures of the integration layer."""

from __future__ import annotations

import pytest

from gridbus.workers.store import Store
from tests.support.amqp import UpstreamSystem


@pytest.fixture
def store(tmp_path):
    """A SQLite store of the test's own (the embedded default for one process)."""
    s = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    yield s
    s.close()


@pytest.fixture
def pms(vhost, system_users):
    """The pms system publishing as the suite's own pms user (a module may define its own)."""
    system = UpstreamSystem(vhost, *system_users["pms"])
    yield system
    system.close()
