"""Binding changes take effect from the next month (provincial retail rules, e.g. Shandong
12.1.5/12.1.8, Jiangsu art. 23-24): when a reviewed binding's contract period may start, and
whether a signed agreement's effective time lies within it. Days are China-local."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Iterable

from gridbus.contracts.tc import TripartiteAgreementSigned, UserUnitReviewPassed
from gridbus.contracts.times import china_date, china_midnight, china_time, first_of_next_month
from gridbus.mappings.retail import reason


def period_problems(
    review: UserUnitReviewPassed, dissolved: Iterable[dict[str, Any]], now: datetime
) -> list[dict[str, str]]:
    """Binding changes take effect from the next month (provincial retail rules): the period
    starts on the first day of a month after the review's month, has not begun yet (China-local
    days), and starts no earlier than the month after the day a dissolved binding of the user
    ends (a deregistration may take effect on a later date than the day it arrives)."""
    start, problems = review.period_start, []
    if start.day != 1:
        problems.append(reason("period-start-mid-month", "PeriodStart",
                               f"period starts {start.isoformat()}; a binding starts on the first day of a month"))
    earliest = first_of_next_month(china_date(review.reviewed_at))
    if start < earliest:
        problems.append(reason(
            "period-start-not-next-month", "PeriodStart",
            f"period starts {start.isoformat()}, but a binding reviewed on "
            f"{china_date(review.reviewed_at).isoformat()} takes effect from the next month: "
            f"{earliest.isoformat()} at the earliest"))
    today = china_date(now)
    if start <= today:
        problems.append(reason("period-already-begun", "PeriodStart",
                               f"period starts {start.isoformat()}, which has begun (today is {today.isoformat()})"))
    for binding in dissolved:
        after = first_of_next_month(date.fromisoformat(binding["dissolved_on"]))
        if start < after:
            problems.append(reason(
                "period-start-before-dissolution-month-ends", "PeriodStart",
                f"the user's binding to {binding['credit_code']} is dissolved on {binding['dissolved_on']}; "
                f"a new binding starts {after.isoformat()} at the earliest"))
            break
    return problems


def effective_time_problems(signing: TripartiteAgreementSigned, binding: dict[str, Any]) -> list[dict[str, str]]:
    """The agreement takes effect within its contract period: from 00:00 of the first day to the
    end of the last day, China time."""
    start = date.fromisoformat(binding["period_start"])
    end = date.fromisoformat(binding["period_end"])
    effective = signing.effective_time
    if china_midnight(start) <= effective < china_midnight(end + timedelta(days=1)):
        return []
    return [reason("effective-time-outside-period", "EffectiveTime",
                   f"effective time {china_time(effective).isoformat()} is outside the contract period "
                   f"{start.isoformat()}..{end.isoformat()} of agreement {binding['agreement_no']}")]


# -- agreement signed or refused -----------------------------------------------------------------------
