"""``Pipeline.start_all``: steps taken one at a time across a batch, each message's as before."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.support.routes import NOTES, note_body
from gridbus.contracts.errors import AdapterError, ContractViolation, MappingError, PermanentError, TransientDeliveryError
from gridbus.workers.pipeline import Delivery, Pipeline
from gridbus.workers.store import Store

NOW = datetime(2026, 12, 8, 17, 0, tzinfo=timezone(timedelta(hours=8)))


class _Message:
    def __init__(self, body: bytes):
        self.body = body
        self.properties = {"message_id": str(uuid.uuid4()), "type": "Note", "user_id": "pms"}
        self.headers = {}
        self.delivery_info = {"exchange": "pms.out", "routing_key": "note.published", "redelivered": False}


class _Ordered:
    """A synchronous target writing each delivery into one log shared by all targets."""

    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def deliver(self, operation, output, context) -> None:
        self.log.append((self.name, output.text))


@pytest.fixture
def run(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    log: list = []
    pipeline = Pipeline(store, {"rec": _Ordered("rec", log), "mkt": _Ordered("mkt", log)}, lambda: NOW)

    def start(texts, known=None):
        batch = [Delivery(route=NOTES, message=_Message(note_body("k", t))) for t in texts]
        pipeline.start_all([(d, (known or {}).get(i, (None, set()))) for i, d in enumerate(batch)])
        return batch

    yield start, log
    store.close()


def test_each_step_runs_across_the_batch_before_the_next(run):
    start, log = run
    batch = start(["a", "b", "c"])
    assert log == [("rec", "a"), ("rec", "b"), ("rec", "c"), ("mkt", "a"), ("mkt", "b"), ("mkt", "c")]
    assert [d.outcome for d in batch] == ["delivered"] * 3
    assert all(d.delivered == ["rec", "mkt"] for d in batch)


def test_a_failing_step_ends_only_that_messages_steps(run):
    start, log = run
    batch = start(["a", "unmappable", "c"])
    assert log == [("rec", "a"), ("rec", "c"), ("mkt", "a"), ("mkt", "c")]
    assert [d.outcome for d in batch] == ["delivered", None, "delivered"]
    assert isinstance(batch[1].error, MappingError)
    assert "unmappable" in batch[1].error.reason


def test_finished_messages_and_recorded_steps_are_skipped_per_message(run):
    start, log = run
    batch = start(["done", "half", "new"], known={0: ("delivered", {"rec", "mkt"}), 1: (None, {"rec"})})
    assert log == [("rec", "new"), ("mkt", "half"), ("mkt", "new")]
    assert [d.outcome for d in batch] == ["duplicate", "delivered", "delivered"]


class _Buggy:
    """A target whose own code is broken: neither a delivery error nor a verdict on the message."""

    name = "rec"

    def __init__(self, error: Exception, batched: bool = False):
        self.error = error
        if batched:
            self.send = self._raise

    def _raise(self, *args):
        raise self.error

    def deliver(self, operation, output, context) -> None:
        raise self.error


@pytest.mark.parametrize("batched", [False, True], ids=["deliver", "send"])
def test_an_adapters_own_bug_is_a_permanent_adapter_error_naming_the_exception(tmp_path, batched):
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    pipeline = Pipeline(store, {"rec": _Buggy(KeyError("wsdl_port"), batched), "mkt": _Ordered("mkt", [])},
                        lambda: NOW)
    (d,) = [Delivery(route=NOTES, message=_Message(note_body("k", "a")))]
    pipeline.start_all([(d, (None, set()))])
    store.close()
    assert isinstance(d.error, AdapterError) and isinstance(d.error, PermanentError)
    assert not isinstance(d.error, TransientDeliveryError)
    assert d.error.kind == "adapter-error"
    assert d.error.reason.startswith("step rec: adapter rec raised KeyError: 'wsdl_port'; fix the adapter")
    assert d.delivered == []


class _CountingNote:
    """``Note``'s decoder, counting its calls; ``{"boom": ...}`` bodies make it raise (a decoder bug)."""

    message_type = "Note"
    calls = 0

    @classmethod
    def decode(cls, body: bytes):
        cls.calls += 1
        if b"boom" in body:
            raise KeyError("boom")
        return NOTES.contract.decode(body)


def test_work_ahead_and_the_steps_share_one_decoding_per_delivery(tmp_path):
    """``decode_ahead`` (as the intake's work-ahead calls it) then ``start_all``: one decode each,
    and a decoder's bug is kept as the delivery's contract violation, raised where it decodes."""
    from dataclasses import replace

    route = replace(NOTES, contract=_CountingNote)
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    log: list = []
    pipeline = Pipeline(store, {"rec": _Ordered("rec", log), "mkt": _Ordered("mkt", log)}, lambda: NOW)
    good = Delivery(route=route, message=_Message(note_body("k", "a")))
    bad = Delivery(route=route, message=_Message(b'{"boom": 1}'))
    _CountingNote.calls = 0
    pipeline.decode_ahead([good, bad], {})
    pipeline.decode_ahead([good, bad], {})  # a second work-ahead over the same deliveries
    pipeline.start_all([(good, (None, set())), (bad, (None, set()))])
    store.close()
    assert _CountingNote.calls == 2
    assert good.outcome == "delivered" and good.decoded.message.text == "a"
    assert isinstance(bad.error, ContractViolation)
    assert bad.error.reason == "could not decode as Note: 'boom'"
    assert bad.decoded.error is bad.error


def test_a_decision_that_takes_rules_is_handed_the_workers_and_one_that_does_not_is_not(tmp_path):
    """``Route.decide`` may take ``rules``: the pipeline hands it the rules it was built with
    (from ``GRIDBUS_MARKET_CATEGORIES``), and calls a three-argument decision as it always did."""
    from dataclasses import replace

    from gridbus.contracts.categories import MarketEligibility
    from gridbus.contracts.rules import Rules
    from gridbus.contracts.state import Decision

    seen = []

    def with_rules(message, state, now, rules):
        seen.append(rules.market.codes)
        return Decision(result={"market": sorted(rules.market.codes)})

    def without(message, state, now):
        seen.append("three")
        return Decision()

    rules = Rules(market=MarketEligibility.of({"residential"}))
    store = Store(f"sqlite:///{tmp_path}/store.sqlite3")
    pipeline = Pipeline(store, {"rec": _Ordered("rec", []), "mkt": _Ordered("mkt", [])}, lambda: NOW, rules=rules)
    for decide in (with_rules, without):
        d = Delivery(route=replace(NOTES, decide=decide), message=_Message(note_body("k", "a")))
        pipeline.start_all([(d, (None, set()))])
        assert d.outcome == "delivered", d.error
    store.close()
    assert seen == [frozenset({"residential"}), "three"]
