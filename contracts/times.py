"""China Standard Time (UTC+8), the time every system gridbus connects keeps.

Times cross system boundaries in ISO 8601 with offset ``+08:00`` (domain brief): a value that
came in, or was taken from the clock, in another offset keeps its instant and is written in
UTC+8 on the way out. A date-only field (a contract period's first day, "today" in a review) is
a China-local day, so a UTC instant after 16:00 belongs to the next day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime

#: UTC+8, without daylight saving time.
CHINA = timezone(timedelta(hours=8), "UTC+08:00")


def china_time(moment: datetime) -> datetime:
    """The same instant in UTC+8. A naive datetime is refused: its instant is unknown."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no offset: its instant is unknown")
    return moment.astimezone(CHINA)


def china_date(moment: datetime) -> date:
    """The China-local day of an instant."""
    return china_time(moment).date()


def china_midnight(day: date) -> datetime:
    """00:00 of a China-local day, as an instant."""
    return datetime(day.year, day.month, day.day, tzinfo=CHINA)


def first_of_next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


#: A time gridbus sends: any offset accepted, kept as the same instant in UTC+8, so it is written
#: ``...+08:00`` (the type of every datetime field of an outbound contract).
ChinaTime = Annotated[AwareDatetime, AfterValidator(china_time)]
