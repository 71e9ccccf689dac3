"""Fixtures of the integration layer."""

from __future__ import annotations

import pytest

from gridbus.workers.store import Store


@pytest.fixture
def store(tmp_path):
    """A SQLite store of the test's own (the embedded default for one process)."""
    s = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    yield s
    s.close()
