"""Facts about a patient that every part of the service computes the same way.

`age_in_years` is the one age: the rules' `%age`, the risk scores' `age` input and the SMART
view's banner all call it, so a birth date is an age to all of them or to none.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, date, datetime

__all__ = ["age_in_years"]

# A FHIR date (YYYY, YYYY-MM, YYYY-MM-DD), or a dateTime (a date, then T and a time).
_BIRTH_DATE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2})(T.+)?)?)?")


def _bounds(birth_date: str) -> tuple[date, date] | None:
    """The earliest and latest day `birth_date` may stand for; None when it is not a date."""
    match = _BIRTH_DATE.fullmatch(birth_date)
    if match is None:
        return None
    year_text, month_text, day_text, time_text = match.groups()
    year = int(year_text)
    try:
        if time_text is not None:  # the time must parse too; its date is read as written
            datetime.fromisoformat(birth_date.replace("Z", "+00:00"))
        if day_text is not None:
            day = date(year, int(month_text), int(day_text))
            return day, day
        if month_text is not None:
            month = int(month_text)
            last = calendar.monthrange(year, month)[1]  # ValueError (IllegalMonthError) if bad
            return date(year, month, 1), date(year, month, last)
        return date(year, 1, 1), date(year, 12, 31)
    except ValueError:
        return None


def age_in_years(birth_date: str | None, at: datetime) -> int | None:
    """The patient's age in whole years at `at`: the age they certainly have.

    - `birth_date` is a FHIR ``date``: ``YYYY-MM-DD``, or partial, ``YYYY-MM`` or ``YYYY``. A
      ``dateTime`` (``1960-07-20T08:30:00+02:00``) counts by its date as written, the birth date
      where the patient was born.
    - A partial date gives the lower bound of the possible ages: the birthday is taken as the
      latest day the date may stand for (the month's last day for ``YYYY-MM``, 31 December for
      ``YYYY``), but never after `at` (a patient born in the current year is 0).
    - The birthday of someone born on 29 February is reached on 1 March in common years.
    - `at` counts by its UTC date (a naive `at` is taken as UTC).
    - None for a missing or unparseable birth date, or one after `at`.

    >>> age_in_years("1960", datetime(2020, 6, 1, tzinfo=UTC))
    59
    """
    if not isinstance(birth_date, str):
        return None
    bounds = _bounds(birth_date)
    if bounds is None:
        return None
    today = (at.astimezone(UTC) if at.tzinfo else at).date()
    earliest, latest = bounds
    if earliest > today:
        return None
    born = min(latest, today)
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))
