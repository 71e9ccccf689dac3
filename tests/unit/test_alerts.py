"""The alert rules file and the webhook's grouping, without a broker."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gridbus.contracts.errors import ContractViolation, UnknownMessageType
from gridbus.workers.alerts import OTHER_TYPE, DeadLetterAlerts, group_of
from gridbus.workers.metrics import Meter, registry_of
from gridbus.workers.pipeline import Delivery
from tests.support.routes import NOTES, note_body

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "gridbus-alerts.yml"
NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))


class _Message:
    def __init__(self, message_type: str):
        self.body = note_body("k", "t")
        self.properties = {"message_id": str(uuid.uuid4()), "type": message_type, "user_id": "pms"}
        self.headers = {}
        self.delivery_info = {"exchange": "pms.out", "routing_key": "note.published", "redelivered": False}


def dead(message_type: str = "Note", error=None) -> Delivery:
    d = Delivery(route=NOTES, message=_Message(message_type))
    d.outcome, d.error = "dead-lettered", error or ContractViolation("not a Note")
    return d


class _Archive:
    """The archive's ``groups``, one group of one letter."""

    def groups(self):
        return [SimpleNamespace(route=NOTES.name, count=1, first_seen=1_000.0)]


def exposed_names() -> set[str]:
    meter = Meter("amqp", [NOTES.name])
    meter.after_settle([dead()])
    registry = registry_of([meter], readiness=lambda: {"amqp": (True, {NOTES.name: True})}, dead_letters=_Archive())
    return {s.name for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}


def test_every_alert_rule_reads_metrics_the_worker_exposes():
    """A rule on a name no worker exports never fires: each rule reads at least one of gridbus's
    names, and every ``gridbus_*`` or ``messaging_*`` name it reads is exposed."""
    names = exposed_names()
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {
        "GridbusDeadLetters", "GridbusRetriesPilingUp", "GridbusRouteWithoutConsumer", "GridbusNotReady",
        "GridbusOldDeadLetter",
    }
    for rule in rules:
        used = set(re.findall(r"\b((?:gridbus|messaging)_[a-z_]+)\b", rule["expr"]))
        assert used, f"{rule['alert']} reads none of gridbus's metrics"
        assert used <= names, f"{rule['alert']} reads {sorted(used - names)}, which no worker exposes"
        assert rule["annotations"]["summary"] and rule["labels"]["severity"] in ("warning", "critical")


def test_a_group_is_route_error_type_and_the_contracts_message_type():
    assert group_of(dead()) == (NOTES.name, "contract-violation", "Note")


def test_made_up_message_types_make_one_group_not_one_each():
    groups = {group_of(dead(f"Type{i}\x1b[2J", UnknownMessageType("unknown"))) for i in range(100)}
    assert groups == {(NOTES.name, "unknown-message-type", OTHER_TYPE)}


def test_a_batch_without_dead_letters_starts_no_sender():
    hook = DeadLetterAlerts("http://127.0.0.1:9/", interval_s=60, source="test", clock=lambda: NOW)
    ok = Delivery(route=NOTES, message=_Message("Note"))
    ok.outcome = "delivered"
    hook.after_settle([ok])
    assert hook._thread is None
