"""Flow 9's quality rules, one at a time, each at its boundary (pure functions: nothing running)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gridbus.contracts.mdc import DailyFrozenPublished
from gridbus.contracts.metering_point import MeteringPointData
from gridbus.mappings.readings import rules
from gridbus.mappings.readings.rules import Held
from gridbus.tools.readings_batch import Batch, good_record

DAY = date(2026, 12, 2)


def reading(n: int = 7, day: date = DAY, **changes):
    """A decoded record (through the contract, as the route reads it), with ``changes`` made."""
    record = replace(good_record(n, day), **changes)
    return DailyFrozenPublished.decode(Batch("B", day, (record,)).xml()).readings[0]


def held(n: int = 7, day: date = DAY - timedelta(days=1), **changes) -> Held:
    return Held.of(reading(n, day, **changes))


def test_every_code_has_a_level_and_only_warnings_carry_a_reading_quality():
    assert {rule.level for rule in rules.RULES.values()} == {"FATAL", "WARNING", "INFORM"}
    for code, rule in rules.RULES.items():
        assert (rule.quality is not None) == (rule.level == "WARNING"), code


def test_tariff_registers_may_differ_from_the_total_by_one_resolution_step_each():
    r = reading()
    at_limit = reading(tariffs=(r.tariffs[0] + D("0.04"), *r.tariffs[1:]))
    over = reading(tariffs=(r.tariffs[0] + D("0.05"), *r.tariffs[1:]))
    assert rules.tariff_sum(at_limit) is None
    finding = rules.tariff_sum(over)
    assert finding.code == "tariff-sum-mismatch" and finding.level == "FATAL" and "allowed difference 0.04" in finding.reason
    coarse = reading(resolution=D("0.1"), tariffs=(r.tariffs[0] + D("0.4"), *r.tariffs[1:]))
    assert rules.tariff_sum(coarse) is None


def test_a_negative_register_is_fatal_and_zero_is_not():
    r = reading()
    assert rules.negative_values(reading(tariffs=(D("0"), *r.tariffs[1:]))) is None
    finding = rules.negative_values(reading(tariffs=(D("-0.01"), *r.tariffs[1:])))
    assert finding.code == "negative-value" and finding.level == "FATAL" and "PAP_R1" in finding.reason


def test_a_multiplier_must_be_positive():
    assert rules.multiplier_valid(reading(multiplier=D("0.0001"))) is None
    assert rules.multiplier_valid(reading(multiplier=D("0"))).code == "multiplier-invalid"


def test_the_record_date_must_be_the_parts():
    assert rules.data_date_matches(reading(), DAY) is None
    assert rules.data_date_matches(reading(), DAY + timedelta(days=1)).code == "date-mismatch"


def test_the_multiplier_is_the_master_datas_and_else_the_last_readings_of_the_same_meter():
    r = reading(multiplier=D("80"))
    master = MeteringPointData(multiplier=D("80"))
    assert rules.multiplier_matches(r, rules.expected_multiplier(master, held(multiplier=D("1")), r)) is None
    finding = rules.multiplier_matches(r, rules.expected_multiplier(MeteringPointData(multiplier=D("40")), None, r))
    assert finding.code == "multiplier-mismatch" and "the master data holds 40" in finding.reason
    assert rules.multiplier_matches(r, rules.expected_multiplier(None, held(multiplier=D("80")), r)) is None
    assert rules.multiplier_matches(r, rules.expected_multiplier(None, held(multiplier=D("60")), r)).code == "multiplier-mismatch"
    exchanged = held(meter="MA-OTHER", multiplier=D("60"))
    assert rules.expected_multiplier(None, exchanged, r) is None  # another meter: nothing held to compare


def test_registers_equal_to_the_last_are_fine_and_one_step_lower_is_backwards():
    base = held(day=DAY)
    same = reading()
    assert rules.advance(same, replace(base, data_date=DAY - timedelta(days=1)), D("1000")) == []
    lower = reading(total=same.total - D("0.01"), tariffs=(*same.tariffs[:3], same.tariffs[3] - D("0.01")))
    [finding] = rules.advance(lower, replace(base, data_date=DAY - timedelta(days=1)), D("1000"))
    assert finding.code == "register-backwards" and finding.level == "FATAL" and "PAP_R4" in finding.reason


def test_a_meter_exchange_is_flagged_and_not_checked_backwards():
    base = held()
    new_meter = reading(meter="MA99000000000007", total=D("5.00"), tariffs=(D("1"), D("1"), D("1"), D("2")))
    [finding] = rules.advance(new_meter, base, D("1000"))
    assert finding.code == "meter-exchange" and finding.level == "WARNING"


def test_a_rollover_needs_the_last_reading_in_the_top_tenth_and_a_small_step_across_the_maximum():
    zero = (D("0"), D("0"), D("0"))
    base = replace(held(), total=D("90000.00"), tariffs=(*zero, D("90000.00")))
    r = reading(total=D("1.00"), tariffs=(*zero, D("1.00")))
    assert rules.rolled_over(D("90000.00"), D("1.00"), D("100000")) is False  # 10,001 across: over a tenth
    assert [f.code for f in rules.advance(r, base, D("1000000"))] == ["register-backwards"]
    base = replace(base, total=D("99990.00"), tariffs=(*zero, D("99990.00")))
    assert rules.rolled_over(D("99990.00"), D("1.00"), D("100000")) is True
    assert [f.code for f in rules.advance(r, base, D("1000"))] == ["register-rollover"]


def test_consumption_over_the_daily_cap_times_the_days_is_implausible():
    base = held()
    today = base.total + D("100")
    r = reading(total=today, tariffs=(*base.tariffs[:3], base.tariffs[3] + D("100")), multiplier=D("2"))
    base = replace(base, multiplier=D("2"))
    assert rules.advance(r, base, D("200")) == []  # 100 kWh x 2 = 200: at the cap
    [finding] = rules.advance(r, base, D("199.99"))
    assert finding.code == "consumption-implausible" and finding.level == "FATAL"
    three_days_ago = replace(base, data_date=DAY - timedelta(days=3))
    assert rules.advance(r, three_days_ago, D("66.67")) == []  # a gap of 3 days: 3 x the cap


def test_the_daily_cap_is_the_contracted_capacity_times_24_hours():
    assert rules.daily_cap_kwh(MeteringPointData(contracted_capacity_kva=D("630"))) == D("15120")
    assert rules.daily_cap_kwh(None) == rules.DEFAULT_DAILY_CAP_KWH
    assert rules.daily_cap_kwh(MeteringPointData()) == rules.DEFAULT_DAILY_CAP_KWH


def test_a_gap_is_more_than_one_day_and_names_the_days_it_spans():
    r = reading()
    assert rules.gap(r, held(day=DAY - timedelta(days=1))) is None
    finding = rules.gap(r, held(day=DAY - timedelta(days=2)))
    assert finding.code == "gap" and finding.level == "WARNING" and "spans 2 days" in finding.reason


def test_same_date_is_a_repeat_unless_collected_later_which_is_a_correction():
    r = reading()
    last = Held.of(r)
    assert rules.place(r, None) == rules.NEW
    assert rules.place(r, last) == rules.REPEAT
    assert rules.place(reading(collected_at=r.collected_at + timedelta(seconds=1)), last) == rules.CORRECTION
    assert rules.place(r, replace(last, data_date=DAY + timedelta(days=1))) == rules.OLDER
    assert rules.place(r, replace(last, data_date=DAY - timedelta(days=1))) == rules.NEW


@pytest.mark.parametrize("code", sorted(rules.RULES))
def test_every_code_is_named_in_the_readme_table(code):
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    assert f"| `{code}` |" in readme


# -- the decision's quick check agrees with the rules ---------------------------------------------

#: What a day adds to a tariff register: nothing, a little, or a lot (past a cap of 600 kWh).
_STEP = st.sampled_from([D("0"), D("0.01"), D("1"), D("150"), D("700")])
#: One thing wrong with the record or its history, or nothing (about half the examples).
_SPOILS = [
    ("tariff down", {}), ("total off", D("0.04")), ("total off", D("-0.04")), ("total off", D("0.05")),
    ("total off", D("-0.05")), ("held days before", 2), ("held days before", 0), ("held days before", -1),
    ("other meter", "MA99000000000007"), ("record day", 1), ("multiplier", D("2")), ("multiplier", D("1.0")),
    ("multiplier", D("0")), ("multiplier", D("-1")), ("held multiplier", D("2")),
]
_SPOIL = st.sampled_from([None] * len(_SPOILS) + _SPOILS)


@settings(max_examples=500, deadline=None)
@given(
    tariff_steps=st.tuples(_STEP, _STEP, _STEP, _STEP), spoil=_SPOIL,
    master=st.sampled_from([None, None, MeteringPointData(), MeteringPointData(multiplier=D("1")),
                            MeteringPointData(multiplier=D("2"), contracted_capacity_kva=D("0.2")),
                            MeteringPointData(contracted_capacity_kva=D("25"))]),  # a cap of 600 kWh a day: 4 x 150 is at it
)
def test_the_decisions_quick_check_passes_exactly_the_records_the_rules_find_nothing_in(tariff_steps, spoil, master):
    from gridbus.mappings.readings.decision import _good, _History, judge

    what, value = spoil or (None, None)
    base = held(day=DAY - timedelta(days=value if what == "held days before" else 1),
                multiplier=value if what == "held multiplier" else D("1"))
    tariffs = [t + step for t, step in zip(base.tariffs, tariff_steps)]
    if what == "tariff down":
        tariffs[2] = base.tariffs[2] - D("0.01")
    changes = {"meter": value} if what == "other meter" else {}
    r = reading(
        day=DAY + timedelta(days=value if what == "record day" else 0), tariffs=tuple(tariffs),
        total=sum(tariffs) + (value if what == "total off" else 0),
        multiplier=value if what == "multiplier" else D("1"), **changes,
    )
    last = base.to_data()
    quick = _good(r, last.split("|"), DAY.isoformat(), (DAY - timedelta(days=1)).isoformat(), master)
    assert quick == (judge(r, DAY, _History(last), master) == (rules.NEW, []))
    event("passes the quick check" if quick else "goes to the full rules")
