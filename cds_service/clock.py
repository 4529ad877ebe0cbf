"""The one wall clock, and a frozen one for tests.

Everything that needs the current time takes a `Clock` (`cds_service.types`): the app gets one in
`create_app(clock=...)` and hands it on (`AppState.clock`, the score provider, the audit writer);
a command-line entry point creates `system_clock` once at its top. Only this module reads the
wall clock, so a frozen clock freezes the whole service.

Example::

    app = create_app(settings, clock=frozen_clock(datetime(2026, 11, 28, 12, tzinfo=UTC)))
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

from cds_service.types import Clock

__all__ = ["CALENDAR_UNITS", "frozen_clock", "shift", "system_clock"]

#: The units of `shift` (and of rule durations such as `within: 6 months`, `for: 1 year`).
CALENDAR_UNITS = ("day", "week", "month", "year")


def system_clock() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def frozen_clock(at: datetime) -> Clock:
    """A clock that always answers `at` (naive values are taken as UTC)."""
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return lambda: moment


def shift(moment: datetime, amount: int, unit: str) -> datetime:
    """`moment` moved by `amount` calendar `unit`s (day, week, month or year); a negative amount
    goes back. Months and years keep the day of the month where it exists and take the month's
    last day otherwise (31 March + 1 month = 30 April)."""
    if unit == "day":
        return moment + timedelta(days=amount)
    if unit == "week":
        return moment + timedelta(weeks=amount)
    if unit not in CALENDAR_UNITS:
        raise ValueError(f"unknown calendar unit {unit!r}")
    months = amount * (12 if unit == "year" else 1)
    year, month = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)
