"""Fixtures of the integration layer."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from gridbus.workers.store import Store


@pytest.fixture
def store(tmp_path):
    """A SQLite store of the test's own (the embedded default for one process)."""
    s = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    yield s
    s.close()


@pytest.fixture
def pg_schema_url(pg_url):
    """A schema of this test's own in the test database, dropped afterwards."""
    schema = f"gridbus_t_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{pg_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
