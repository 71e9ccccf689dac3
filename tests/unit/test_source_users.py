"""GRIDBUS_SOURCE_USERS: which RabbitMQ user publishes for each source system."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gridbus.routes.model import SYSTEMS
from gridbus.workers.settings import Settings


def test_by_default_each_system_publishes_as_its_code(monkeypatch):
    monkeypatch.delenv("GRIDBUS_SOURCE_USERS", raising=False)
    assert Settings().source_user_names() == {system: system for system in SYSTEMS}


def test_the_environment_maps_systems_to_users_and_leaves_the_others_as_their_code(monkeypatch):
    monkeypatch.setenv("GRIDBUS_SOURCE_USERS", '{"pms": "prod-pms", "mkt": "prod-mkt"}')
    names = Settings().source_user_names()
    assert names["pms"] == "prod-pms" and names["mkt"] == "prod-mkt"
    assert names["cmd"] == "cmd" and names["tc"] == "tc"


@pytest.mark.parametrize(
    "mapping, says",
    [
        ({"erp": "x"}, "unknown source system(s) erp"),
        ({"gridbus": "x"}, "unknown source system(s) gridbus"),  # internal: no RabbitMQ user publishes for it
        ({"pms": "mkt"}, "user(s) mkt would publish for more than one system"),
        ({"pms": "one", "mkt": "one"}, "user(s) one would publish for more than one system"),
        ({"pms": ""}, "1-255 printable characters"),
        ({"pms": "prod pms"}, "1-255 printable characters"),
        ({"pms": "prod\x1b[2Jpms"}, "1-255 printable characters"),
        ({"pms": "p" * 256}, "1-255 printable characters"),
    ],
)
def test_a_mapping_that_cannot_be_meant_is_refused_at_start_up(mapping, says):
    with pytest.raises(ValidationError, match=r"source_users[\s\S]*" + says.replace("(", r"\(").replace(")", r"\)")):
        Settings(source_users=mapping)


def test_two_systems_may_swap_users():
    names = Settings(source_users={"pms": "mkt", "mkt": "pms"}).source_user_names()
    assert (names["pms"], names["mkt"]) == ("mkt", "pms")
