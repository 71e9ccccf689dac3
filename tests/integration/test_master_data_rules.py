"""The master-data rules (flow 10), each decided on a real store, SQLite and PostgreSQL: system of
record, transformer write rights, one business code per object, relations that wait for their
ends, stale revisions, and the metering-point data the readings flow reads."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from decimal import Decimal

import pytest

from gridbus.contracts.errors import AwaitingReference
from gridbus.contracts.metering_point import METERING_POINT, MeteringPointData
from gridbus.mappings.master_data import rules
from gridbus.workers.store import Store
from tests.support.master_data import CHINA, change, code

NOW = datetime(2026, 12, 8, 10, 0, tzinfo=CHINA)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    return request.getfixturevalue("pg_schema_url")


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()


def decide(store, message, message_id=None):
    state = store.state.view()
    decision = rules.decide(message, state, NOW)
    assert store.state.commit_decision("test", message_id or str(uuid.uuid4()), decision, state.read, NOW)
    return decision.result


def outcome(result) -> tuple:
    return result["decision"], result.get("error")


def held(store, business_code):
    return store.state.get_record(rules.REGISTRY, business_code)


# -- system of record ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("system", "object_type"), [("mkt", "substation"), ("pms", "customer"), ("mkt", "line")])
def test_a_change_from_the_wrong_system_is_refused_and_changes_nothing(store, system, object_type):
    c = code("X")
    result = decide(store, change(system, object_type, c))
    assert outcome(result) == ("refused", "not-system-of-record")
    assert result["owner"] == ("pms" if system == "mkt" else "mkt")
    assert f"{system} is not the system of record for {object_type}" in result["reason"]
    assert held(store, c) is None


def test_the_system_of_record_creates_and_changes_its_object(store):
    c = code("SUB")
    assert outcome(decide(store, change("pms", "substation", c, fields={"Name": "城东变"}))) == ("accepted", None)
    result = decide(store, change("pms", "substation", c, operation="change", revision=2,
                                  fields={"Name": ("城东变", "城东110kV变电站"), "VoltageLevel": "110kV"}))
    assert result == {"decision": "accepted", "owner": "pms", "object_type": "substation", "verb": "changed"}
    record = held(store, c)
    assert record.data["revision"] == 2
    assert record.data["values"] == {"Name": "城东110kV变电站", "VoltageLevel": "110kV"}


# -- transformer write rights -------------------------------------------------------------------------


def test_a_public_transformer_written_by_marketing_is_refused(store):
    c = code("PTR")
    result = decide(store, change("mkt", "transformer", c, use="public"))
    assert outcome(result) == ("refused", "write-not-permitted") and result["owner"] == "pms"
    assert "a public transformer is written by pms, not by mkt" in result["reason"]
    assert held(store, c) is None


def test_a_dedicated_transformer_written_by_pms_is_refused(store):
    c = code("PTR")
    result = decide(store, change("pms", "transformer", c, use="dedicated"))
    assert outcome(result) == ("refused", "write-not-permitted")
    assert held(store, c) is None


def test_each_system_writes_its_own_transformers(store):
    public, dedicated = code("PTR"), code("PTR")
    assert outcome(decide(store, change("pms", "transformer", public, use="public"))) == ("accepted", None)
    assert outcome(decide(store, change("mkt", "transformer", dedicated, use="dedicated"))) == ("accepted", None)
    # Both live on the grid-resource platform, which owns them whoever writes them.
    assert held(store, public).data["owner"] == held(store, dedicated).data["owner"] == "pms"


def test_public_to_dedicated_from_marketing_is_refused(store):
    c = code("PTR")
    decide(store, change("pms", "transformer", c, use="public"))
    result = decide(store, change("mkt", "transformer", c, operation="change", revision=2, use="dedicated"))
    assert outcome(result) == ("refused", "use-change-not-permitted")
    assert "accepted only from pms, not from mkt" in result["reason"]
    assert held(store, c).data["use"] == "public" and held(store, c).data["revision"] == 1


def test_public_to_dedicated_from_pms_is_accepted_and_marketing_writes_it_then(store):
    c = code("PTR")
    decide(store, change("pms", "transformer", c, use="public"))
    result = decide(store, change("pms", "transformer", c, operation="change", revision=2, use="dedicated"))
    assert outcome(result) == ("accepted", None)
    assert held(store, c).data["use"] == "dedicated"
    # A dedicated transformer now: marketing maintains it, PMS only may turn it back to public.
    assert outcome(decide(store, change("mkt", "transformer", c, operation="change", revision=3, use="dedicated",
                                        fields={"RatedCapacity": ("400", "630")}))) == ("accepted", None)
    assert outcome(decide(store, change("pms", "transformer", c, operation="change", revision=4, use="dedicated"))) == (
        "refused", "write-not-permitted")
    assert outcome(decide(store, change("mkt", "transformer", c, operation="change", revision=4, use="public"))) == (
        "refused", "use-change-not-permitted")
    assert outcome(decide(store, change("pms", "transformer", c, operation="change", revision=4, use="public"))) == (
        "accepted", None)


# -- one object, one business code ----------------------------------------------------------------------


def test_a_code_held_for_another_object_type_is_refused_across_platforms(store):
    c = code("BC")
    decide(store, change("pms", "substation", c))
    result = decide(store, change("mkt", "customer", c))
    assert outcome(result) == ("refused", "business-code-conflict")
    assert result["owner"] == "pms"  # the code's holder
    assert f"business code {c} is held for a substation" in result["reason"]
    assert held(store, c).data["object_type"] == "substation"
    # Deleted, the code stays that object's: a code is never reused for another object type.
    decide(store, change("pms", "substation", c, operation="delete", revision=2, fields={}))
    assert outcome(decide(store, change("pms", "line", c, revision=3))) == ("refused", "business-code-conflict")


def test_two_workers_claiming_one_code_for_two_types_cannot_both_commit(store_url):
    stores = [Store(store_url) for _ in range(2)]
    try:
        c = code("BC")
        messages = [change("pms", "substation", c), change("mkt", "customer", c)]
        views = [s.state.view() for s in stores]
        decisions = [rules.decide(m, v, NOW) for m, v in zip(messages, views)]  # both read the code as free
        assert all(d.result["decision"] == "accepted" for d in decisions)
        committed = [s.state.commit_decision("test", str(uuid.uuid4()), d, v.read, NOW)
                     for s, d, v in zip(stores, decisions, views)]
        assert committed == [True, False]
        # The loser is decided again (its retry) on the state the winner left.
        assert outcome(decide(stores[1], messages[1])) == ("refused", "business-code-conflict")
    finally:
        for s in stores:
            s.close()


def test_competing_workers_deciding_at_once_leave_one_holder(store_url):
    stores = [Store(store_url) for _ in range(4)]
    c = code("BC")
    types = [("pms", "substation"), ("mkt", "customer"), ("pms", "line"), ("mkt", "meter")]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def run(s, system, object_type):
        message = change(system, object_type, c)
        barrier.wait()
        for _ in range(10):  # a refused commit is decided again, as the route's retry would
            view = s.state.view()
            decision = rules.decide(message, view, NOW)
            if s.state.commit_decision("test", str(uuid.uuid4()), decision, view.read, NOW):
                outcomes.append(decision.result["decision"])
                return

    threads = [threading.Thread(target=run, args=(s, *t)) for s, t in zip(stores, types)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == ["accepted", "refused", "refused", "refused"]
        assert held(stores[0], c).version == 1
    finally:
        for s in stores:
            s.close()


# -- relations ------------------------------------------------------------------------------------------


def test_a_relation_waits_for_its_object_and_is_accepted_once_it_arrives(store):
    substation, line, relation = code("SUB"), code("LN"), code("REL")
    decide(store, change("pms", "substation", substation))
    message = change("pms", "substation-line", relation, ends=(substation, line))
    with pytest.raises(AwaitingReference, match=f"names {line}, which gridbus does not hold yet"):
        rules.decide(message, store.state.view(), NOW)
    assert held(store, relation) is None
    decide(store, change("pms", "line", line))
    assert outcome(decide(store, message)) == ("accepted", None)
    assert held(store, relation).data["ends"] == [substation, line]


def test_a_relation_to_an_object_of_the_wrong_type_is_refused(store):
    meter, box, relation = code("MTR"), code("MB"), code("REL")
    decide(store, change("mkt", "meter", meter))
    decide(store, change("mkt", "meter", box))  # a meter, not a meter box
    result = decide(store, change("mkt", "meter-meter-box", relation, ends=(meter, box)))
    assert outcome(result) == ("refused", "reference-type-mismatch")
    expected = f"the second end {box} of meter-meter-box relation {relation} is a meter, not a meter-box"
    assert expected in result["reason"]


def test_a_dedicated_transformer_customer_relation_needs_a_dedicated_transformer(store):
    public, dedicated, customer = code("PTR"), code("PTR"), code("CU")
    decide(store, change("pms", "transformer", public, use="public"))
    decide(store, change("mkt", "transformer", dedicated, use="dedicated"))
    decide(store, change("mkt", "customer", customer))
    refused = decide(store, change("pms", "dedicated-transformer-customer", code("REL"), ends=(public, customer)))
    assert outcome(refused) == ("refused", "reference-type-mismatch")
    assert "is a public transformer, not a dedicated one (专变)" in refused["reason"]
    accepted = decide(store, change("pms", "dedicated-transformer-customer", code("REL"), ends=(dedicated, customer)))
    assert outcome(accepted) == ("accepted", None)


def test_a_relation_to_a_deleted_object_waits_but_its_deletion_does_not(store):
    meter, point, relation = code("MTR"), code("MP"), code("REL")
    decide(store, change("mkt", "meter", meter))
    decide(store, change("mkt", "metering-point", point))
    decide(store, change("mkt", "meter-metering-point", relation, ends=(meter, point)))
    decide(store, change("mkt", "meter", meter, operation="delete", revision=2, fields={}))
    with pytest.raises(AwaitingReference):
        rules.decide(change("mkt", "meter-metering-point", relation, operation="change", revision=2,
                            ends=(meter, point)), store.state.view(), NOW)
    result = decide(store, change("mkt", "meter-metering-point", relation, operation="delete", revision=2,
                                  ends=(meter, point), fields={}))
    assert result["verb"] == "deleted" and held(store, relation).data["deleted"]


# -- revisions ------------------------------------------------------------------------------------------


def test_a_stale_revision_is_superseded_and_the_same_revision_is_a_repeat(store):
    c = code("LN")
    decide(store, change("pms", "line", c, revision=3, fields={"Name": "10kV城东线"}))
    stale = decide(store, change("pms", "line", c, operation="change", revision=2, fields={"Name": ("a", "b")}))
    assert stale["decision"] == "superseded"
    assert stale["reason"] == f"revision 2 is older than revision 3 held for line {c}"
    assert decide(store, change("pms", "line", c, revision=3, fields={"Name": "10kV城东线"}))["decision"] == "repeat"
    assert held(store, c).data["values"] == {"Name": "10kV城东线"} and held(store, c).version == 1


# -- metering points --------------------------------------------------------------------------------------


def test_an_accepted_metering_point_keeps_what_the_readings_flow_reads(store):
    c = code("MP")
    decide(store, change("mkt", "metering-point", c, fields={
        "CtRatio": "40", "PtRatio": "100", "ContractedCapacity": "1250", "CategoryCode": "100",
        "Customer": "3301060017"}))
    point = MeteringPointData.from_data(store.state.get_record(METERING_POINT, c).data)
    assert point == MeteringPointData(Decimal("4000"), Decimal("1250"), "100", "3301060017")
    decide(store, change("mkt", "metering-point", c, operation="change", revision=2, fields={"CtRatio": ("40", "80")}))
    point = MeteringPointData.from_data(store.state.get_record(METERING_POINT, c).data)
    assert point.multiplier == Decimal("8000") and point.contracted_capacity_kva == Decimal("1250")


def test_personal_fields_are_forwarded_but_not_kept(store):
    c = code("CU")
    decide(store, change("mkt", "customer", c, fields={"CustomerName": "张三", "Category": "large_industrial"}))
    assert held(store, c).data["values"] == {"Category": "large_industrial"}


def test_a_refused_metering_point_keeps_nothing(store):
    c = code("MP")
    decide(store, change("pms", "metering-point", c, fields={"CtRatio": "40"}))
    assert store.state.get_record(METERING_POINT, c) is None
