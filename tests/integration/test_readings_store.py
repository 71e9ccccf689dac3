"""Flow 9's decision on a real store (SQLite and PostgreSQL): every rule in a part of 1,000, the
state read in one go and moved once, and the histories a metering point can have (a meter
exchange, a rollover, a correction, a gap)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal as D

import pytest

from gridbus.contracts.mdc import DailyFrozenPublished
from gridbus.mappings.readings import decision as readings
from gridbus.tools.readings_batch import CHINA, Batch, good_record, meter_no, point_id
from tests.integration import test_store as store_tests
from tests.support.readings import (
    DAY, NOW, decide, market_point, previous_day, problem_history, thousand_with_problems,
)

pytestmark = pytest.mark.postgres

#: What each problem record of ``thousand_with_problems`` is reported with, exactly.
EXPECTED = {
    "negative-value": {"negative-value", "tariff-sum-mismatch", "register-backwards"},
    "tariff-sum-mismatch": {"tariff-sum-mismatch"},
    "multiplier-mismatch": {"multiplier-mismatch"},
    "register-backwards": {"register-backwards"},
    "consumption-implausible": {"consumption-implausible"},
    "date-mismatch": {"date-mismatch", "older-than-accepted"},
    "first-reading": {"first-reading"},
    "gap": {"gap"},
    "meter-exchange": {"meter-exchange"},
    "register-rollover": {"register-rollover"},
    "repeat": {"repeat"},
    "correction": {"correction"},
    "older-than-accepted": {"older-than-accepted"},
}
FATAL = {"negative-value", "tariff-sum-mismatch", "multiplier-mismatch", "register-backwards",
         "consumption-implausible", "date-mismatch", "older-than-accepted"}


#: The store on SQLite and on a PostgreSQL schema of the test's own (``pg_schema_url`` of the
#: integration layer's conftest), as the store's own tests have it.
store = store_tests.store


def last(store, n: int) -> dict | None:
    record = store.state.get_record(readings.LAST_READING, point_id(n))
    if record is None:
        return None
    held = readings.rules.Held.from_data(record.data["last"])
    return {"date": held.data_date.isoformat(), "total": str(held.total), "meter": held.meter, "version": record.version}


def test_a_part_of_1000_reports_exactly_its_problem_records_and_withholds_the_fatal_ones(store):
    problem_history(store)
    decide(store, previous_day(range(1, 988)), "prev")
    batch, at = thousand_with_problems()
    result = decide(store, batch, "part-1")
    found: dict[int, set[str]] = {}
    for index, code, level, reason in result["problems"]:
        found.setdefault(index, set()).add(code)
        assert level == readings.rules.RULES[code].level
        assert "\n" not in reason and len(reason) < 500 and point_id(1900 + list(at).index(next(c for c in at if at[c] == index)) + 1) in reason
    assert found == {at[kind]: codes for kind, codes in EXPECTED.items()}
    assert sorted(result["withheld"]) == sorted(at[kind] for kind in FATAL)
    assert result["repeats"] == [at["repeat"]] and result["corrections"] == [at["correction"]]
    assert result["flags"] == {str(at[k]): [k] for k in ("first-reading", "gap", "meter-exchange", "register-rollover")}
    assert result["result"] == "PARTIAL"
    assert result["counts"] == {"received": 1000, "accepted": 992, "flagged": 4, "withheld": 7, "repeats": 1,
                                "corrections": 1, "market": 0}
    # withheld records leave the last reading where it was; accepted ones move it
    assert last(store, 1904)["date"] == (DAY - timedelta(days=1)).isoformat()
    assert last(store, 1910)["total"] == "12.00" and last(store, 1909)["meter"] == meter_no(1909, 1)


def test_the_state_is_read_in_one_get_many_per_kind_whatever_the_parts_size(store):
    decide(store, previous_day(range(1, 2001)), "prev")
    part = DailyFrozenPublished.decode(Batch("B-READS", DAY, tuple(good_record(n, DAY) for n in range(1, 2001))).xml())
    calls = []
    view = store.state.view()

    class Counting:
        def get(self, kind, key):
            calls.append(("get", kind))
            return view.get(kind, key)

        def get_many(self, kind, keys, *, checked=True):
            calls.append(("get_many", kind))
            return view.get_many(kind, keys, checked=checked)

        def get_data_many(self, kind, keys, **kwargs):
            calls.append(("get_data_many", kind))
            return view.get_data_many(kind, keys, **kwargs)

        def find(self, kind, **kwargs):
            calls.append(("find", kind))
            return view.find(kind, **kwargs)

    decision = readings.decide(part, Counting(), NOW)
    assert sorted(calls) == sorted([("get_data_many", "last-reading"), ("get_many", "metering-point"),
                                    ("get_many", "market-point"), ("find", "readings-part")])
    assert len([kind for kind, *_ in decision.writes() if kind == "last-reading"]) == 2000


def test_a_part_decided_again_or_resent_under_a_new_id_moves_the_state_once(store):
    decide(store, previous_day(range(1, 51)), "prev")
    batch = Batch("B-ONCE", DAY, tuple(good_record(n, DAY) for n in range(1, 51)))
    first = decide(store, batch, "once-1")
    assert first["counts"]["accepted"] == 50 and first["result"] == "OK"
    version = last(store, 7)["version"]
    view = store.state.view()
    again = readings.decide(DailyFrozenPublished.decode(batch.xml()), view, NOW)
    assert not store.state.commit_decision("mdc.daily-frozen-published", "once-1", again, view.read, NOW)
    resent = decide(store, batch, "once-2")  # the same content under a new message id
    assert resent["repeats"] == list(range(1, 51)) and resent["counts"]["accepted"] == 0
    assert resent["result"] == "OK"  # repeats are told (INFORM), not refused
    assert last(store, 7)["version"] == version


def test_a_meter_exchange_then_normal_days_on_the_new_meter(store):
    decide(store, Batch("B-X0", DAY - timedelta(days=1), (good_record(5, DAY - timedelta(days=1)),)), "x0")
    new = replace(good_record(5, DAY), meter=meter_no(5, 1), total=D("3.00"), tariffs=(D("0.30"), D("0.90"), D("1.05"), D("0.75")))
    result = decide(store, Batch("B-X1", DAY, (new,)), "x1")
    assert result["flags"] == {"1": ["meter-exchange"]} and result["withheld"] == []
    later = replace(new, data_date=DAY + timedelta(days=1), collected_at=new.collected_at + timedelta(days=1),
                    total=D("2.00"), tariffs=(D("0.20"), D("0.60"), D("0.70"), D("0.50")))
    result = decide(store, Batch("B-X2", DAY + timedelta(days=1), (later,)), "x2")
    assert [p[1] for p in result["problems"]] == ["register-backwards"]  # the new meter is held now


def test_a_correction_with_a_newer_collected_at_is_judged_against_the_day_before(store):
    decide(store, previous_day([9]), "c0")
    decide(store, Batch("B-C1", DAY, (good_record(9, DAY),)), "c1")
    fixed = replace(good_record(9, DAY, minute=900), total=good_record(9, DAY).total - D("2"),
                    tariffs=(*good_record(9, DAY).tariffs[:3], good_record(9, DAY).tariffs[3] - D("2")))
    result = decide(store, Batch("B-C2", DAY, (fixed,)), "c2")
    assert result["corrections"] == [1] and result["withheld"] == []
    assert last(store, 9)["total"] == str(fixed.total)
    stale = decide(store, Batch("B-C3", DAY, (good_record(9, DAY),)), "c3")  # the older collection again
    assert stale["repeats"] == [1]


def test_a_gap_of_three_days_is_flagged_and_its_cap_is_three_days(store):
    decide(store, Batch("B-G0", DAY - timedelta(days=3), (good_record(11, DAY - timedelta(days=3)),)), "g0")
    result = decide(store, Batch("B-G1", DAY, (good_record(11, DAY),)), "g1")
    [(index, code, level, reason)] = result["problems"]
    assert (index, code, level) == (1, "gap", "WARNING") and "spans 3 days" in reason


def test_only_points_in_the_market_on_the_data_date_go_to_the_trading_center(store):
    from tests.support.readings import seed

    seed(store, [market_point(1, datetime(2026, 12, 2, 0, 0, tzinfo=CHINA)),
                 market_point(2, datetime(2026, 12, 3, 0, 0, tzinfo=CHINA))])
    decide(store, previous_day([1, 2, 3]), "m0")
    result = decide(store, Batch("B-M", DAY, tuple(good_record(n, DAY) for n in (1, 2, 3))), "m1")
    assert result["market"] == [1]


def test_the_batch_record_names_the_parts_received_and_missing(store):
    decide(store, previous_day([1, 2]), "p0")
    decide(store, Batch("B-PARTS", DAY, (good_record(1, DAY),), part_no=1, part_count=3), "p1")
    decide(store, Batch("B-PARTS", DAY, (good_record(2, DAY),), part_no=3, part_count=3), "p3")
    lines = [row[4] for row in store.journal.trace("B-PARTS")]
    assert lines[-1].endswith("parts received 2 of 3, missing 2")
    assert "part 1 of 3" in lines[0] and "received 1, accepted 1" in lines[0]


def test_two_parts_of_one_batch_decided_at_once_both_commit_and_a_point_moved_meanwhile_does_not(store):
    """Competing workers take the parts of one batch at the same moment: neither refuses the
    other (each part has its own record); a part whose point another part moved is refused."""
    decide(store, previous_day([1, 2]), "p0")
    parts = [DailyFrozenPublished.decode(Batch("B-AT-ONCE", DAY, (good_record(n, DAY),), part_no=n, part_count=2).xml())
             for n in (1, 2)]
    views = [store.state.view() for _ in parts]
    decisions = [readings.decide(part, view, NOW) for part, view in zip(parts, views)]  # both before either commits
    route = "mdc.daily-frozen-published"
    assert [store.state.commit_decision(route, f"at-once-{n}", d, v.read, NOW) for n, d, v in zip((1, 2), decisions, views)] == [True, True]
    lines = [row[4] for row in store.journal.trace("B-AT-ONCE")]
    assert [line.endswith("parts received 1 of 2, missing 2") for line in lines] == [True, False]  # neither saw the other
    assert lines[1].endswith("parts received 1 of 2, missing 1")
    assert readings.batch_status(store.state.view(), "B-AT-ONCE") == "batch B-AT-ONCE: parts received 2 of 2, complete"
    assert readings.batch_status(store.state.view(), "B-NONE") is None
    again = DailyFrozenPublished.decode(Batch("B-OTHER", DAY, (good_record(1, DAY),)).xml())
    view = store.state.view()
    decision = readings.decide(again, view, NOW)  # a repeat of point 1: reads its last reading
    decide(store, Batch("B-THIRD", DAY + timedelta(days=1), (good_record(1, DAY + timedelta(days=1)),)), "p-next")
    assert store.state.commit_decision(route, "late", decision, view.read, NOW) is False
