"""FHIRPath Date/DateTime arithmetic and comparison, as pure functions over ISO strings.

Rules read the call's clock as `%now` (a DateTime in UTC to the microsecond, `Z`) and `%today`
(a Date), and compare FHIR data with them: `effective >= %now - 6 hours`. fhirpathpy 2.2.4 gets
this wrong for most real values: `%now - 1 year` is `''` when `%now` carries a fraction and `Z`,
`%now - 6 hours` raises UnboundLocalError, results lose their offset and come back as strings
that later compare as text, and seconds and milliseconds are two precisions. This module is the
FHIRPath N1 semantics (§6.6.4 Date/Time Arithmetic, §6.1.1 Equals, §6.1.3 Equivalent,
§6.2 Comparison); `install()` makes fhirpathpy use it.

- A value has a *precision*: year, month, day, hour, minute or second, where second carries the
  fraction as written (`31`, `31.0` and `31.123456` are all second precision: the number of
  digits is kept for output, and seconds compare as one decimal).
- `value + quantity` (and `-`): the unit is a calendar duration (`year(s)`, `month(s)`,
  `week(s)`, `day(s)`, `hour(s)`, `minute(s)`, `second(s)`, `millisecond(s)`) or one of the UCUM
  codes `'wk'`, `'d'`, `'h'`, `'min'`, `'s'`, `'ms'`. `'a'` and `'mo'` are definite durations,
  not calendar ones, and quoted words such as `'month'` are not UCUM: all are errors (as in the
  HL7 suite and fhirpath.js).
- Above seconds the quantity's decimal part is ignored (`7.7 days` is 7 days). A quantity finer
  than the value is converted to the value's precision and truncated toward zero: 12 months a
  year, and 365 days a year or 30 a month where days or smaller meet years or months (as
  fhirpath.js): `@2014 + 24 months = @2016`, `@2014-01 + 45 days = @2014-02`,
  `@2014-01-01 + 36 hours = @2014-01-02`. At second precision the finest unit is the last
  written digit: `…:00.1 + 25 ms` is `…:00.1`, `…:00.100 + 25 ms` is `…:00.125`. Truncating
  toward zero makes `(x + q) - q = x` except where a month end clamped the day.
- Years and months are calendar arithmetic, the day clamped to the month's last day
  (`@2024-02-29 + 1 year = @2025-02-28`, `@2014-01-31 + 1 month = @2014-02-28`).
- The result keeps the input's precision, fraction digits and offset as written: `Z` stays `Z`,
  `+01:00` stays `+01:00`, none stays none. Days, hours and smaller move the wall clock *in the
  written offset*: `2026-03-28T12:00:00+01:00 + 1 day` is `2026-03-29T12:00:00+01:00` although
  Paris changed to `+02:00` in between (a value names an offset, not a zone; that result is the
  same instant as `13:00:00+02:00`).
- Comparison (`<`, `<=`, `>`, `>=`) and equality (`=`, `!=`) first normalise a value *with a
  time* to UTC (a date without a time is not shifted: it names a calendar day), then walk the
  precisions from the year: the first difference decides; if one value has the next precision
  and the other does not, the result is empty; if both end together they are equal. Equivalence
  (`~`) is equality with empty read as false.
- A time written **without an offset** is taken as UTC, the offset of the service's clock. FHIR
  data may not carry one (a dateTime with a time SHALL have an offset) and the rule loader
  refuses one in rule text (`rules/conformance.py`), so this policy only decides for
  non-conformant data. The spec leaves it to implementations (§6.1.1); the HL7 suite's
  testEquality23 expects empty for a mixed pair instead.

Why a monkeypatch: fhirpathpy creates the `FP_DateTime` objects itself (literals, FHIR
date/dateTime elements, `%now` from the engine) and its operators call `plus`, `compare` and
`equals` on them. A subclass would not be used for literals and data, and fhirpathpy's
inequality check requires both sides to be exactly the same class; a fork would make us own the
whole evaluator. So `install()` sets exactly these three methods on `FP_DateTime` (fhirpathpy
defines them on its base class, `FP_TimeBase`, which keeps them for `FP_Time`), and everything
else stays as published. The upstream report is docs/upstream/fhirpathpy-datetime.md.
"""

from __future__ import annotations

import calendar
import functools
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from fhirpathpy.engine.nodes import FP_DateTime, FP_Quantity

__all__ = ["DateTimeError", "FhirDateTime", "add", "compare", "equals", "install", "parse"]

YEAR, MONTH, DAY, HOUR, MINUTE, SECOND = 1, 2, 3, 4, 5, 6

_ISO = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?)?"
    r"(?P<offset>Z|[+-]\d{2}:\d{2})?)?)?)?"
)

# FHIRPath calendar-duration keywords and the UCUM codes allowed for date arithmetic (fhirpathpy
# keeps a UCUM unit with its quotes). 'a' and 'mo' are deliberately absent.
_UNITS: Final[dict[str, str]] = {
    **{word: "year" for word in ("year", "years")},
    **{word: "month" for word in ("month", "months")},
    **{word: "week" for word in ("week", "weeks", "'wk'")},
    **{word: "day" for word in ("day", "days", "'d'")},
    **{word: "hour" for word in ("hour", "hours", "'h'")},
    **{word: "minute" for word in ("minute", "minutes", "'min'")},
    **{word: "second" for word in ("second", "seconds", "'s'")},
    **{word: "millisecond" for word in ("millisecond", "milliseconds", "'ms'")},
}
_UNIT_PRECISION: Final = {"year": YEAR, "month": MONTH, "day": DAY, "hour": HOUR, "minute": MINUTE}
# Seconds in a unit, for converting a quantity finer than the value (fhirpath.js's table).
_SECONDS: Final = {
    "year": Decimal(365 * 86400),
    "month": Decimal(30 * 86400),
    "day": Decimal(86400),
    "hour": Decimal(3600),
    "minute": Decimal(60),
    "second": Decimal(1),
    "millisecond": Decimal("0.001"),
}
_INT_FIELDS: Final = ("month", "day", "hour", "minute", "second")
_PRECISION_UNIT: Final = {YEAR: "year", MONTH: "month", DAY: "day", HOUR: "hour", MINUTE: "minute"}


class DateTimeError(ValueError):
    """A value that is not a FHIRPath Date/DateTime, a unit that cannot be added, or a result
    outside years 0001-9999."""


@dataclass(frozen=True, slots=True)
class FhirDateTime:
    """A Date or DateTime as written: components down to its precision, fraction and offset."""

    year: int
    month: int | None = None
    day: int | None = None
    hour: int | None = None
    minute: int | None = None
    second: int | None = None
    fraction: str | None = None  # the digits after the decimal point, as written
    offset: str | None = None  # "Z", "+01:00" or None, as written

    @property
    def precision(self) -> int:
        """YEAR … SECOND: the finest component present (a fraction belongs to SECOND)."""
        parts = (self.month, self.day, self.hour, self.minute, self.second)
        return YEAR + sum(part is not None for part in parts)

    def __str__(self) -> str:
        text = f"{self.year:04d}"
        if self.month is not None:
            text += f"-{self.month:02d}"
        if self.day is not None:
            text += f"-{self.day:02d}"
        if self.hour is not None:
            text += f"T{self.hour:02d}"
            if self.minute is not None:
                text += f":{self.minute:02d}"
            if self.second is not None:
                text += f":{self.second:02d}"
            if self.fraction is not None:
                text += f".{self.fraction}"
            text += self.offset or ""
        return text


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> FhirDateTime:
    """Parse a FHIRPath Date/DateTime (without `@`); raise DateTimeError when it is not one."""
    match = _ISO.fullmatch(text)
    if match is None:
        raise DateTimeError(f"not a FHIRPath date/dateTime: {text!r}")
    groups = match.groupdict()
    value = FhirDateTime(
        year=int(groups["year"]),
        **{k: None if groups[k] is None else int(groups[k]) for k in _INT_FIELDS},
        fraction=groups["fraction"],
        offset=groups["offset"],
    )
    try:  # range checks: datetime knows the calendar
        datetime(value.year, value.month or 1, value.day or 1, value.hour or 0, value.minute or 0)
        if (value.second or 0) > 59 or _offset_minutes(value.offset) is None:
            raise ValueError(text)
    except ValueError:
        raise DateTimeError(f"not a valid date/dateTime: {text!r}") from None
    return value


def _offset_minutes(offset: str | None) -> int | None:
    """Minutes east of UTC (no offset and `Z` are 0); None when out of range."""
    if offset is None or offset == "Z":
        return 0
    hours, minutes = int(offset[1:3]), int(offset[4:6])
    if hours > 14 or minutes > 59:
        return None
    return (hours * 60 + minutes) * (-1 if offset[0] == "-" else 1)


# ---------------------------------------------------------------------------------- arithmetic


def add(text: str, amount: Decimal | int | float, unit: str) -> str:
    """`text + amount unit` (negative `amount` subtracts), with the semantics above.

    >>> add("2026-11-28T12:00:00.123456Z", -6, "hours")
    '2026-11-28T06:00:00.123456Z'
    >>> add("2014", 24, "months")
    '2016'
    """
    calendar_unit = _UNITS.get(unit)
    if calendar_unit is None:
        raise DateTimeError(
            f"cannot add {unit} to a date/dateTime: use year(s), month(s), week(s), day(s), "
            "hour(s), minute(s), second(s), millisecond(s) or 'wk', 'd', 'h', 'min', 's', 'ms'"
        )
    value = parse(text)
    quantity = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    if calendar_unit == "week":
        calendar_unit, quantity = "day", quantity * 7
    if calendar_unit in _UNIT_PRECISION:  # calendar semantics: the decimal part is ignored
        quantity = Decimal(int(quantity))
    precision = value.precision
    if precision < SECOND and _finer(calendar_unit, precision):
        calendar_unit, quantity = _convert(calendar_unit, quantity, precision)
    try:
        return str(_apply(value, calendar_unit, quantity))
    except (OverflowError, ValueError):
        raise DateTimeError(f"{text} + {amount} {unit} is outside years 0001-9999") from None


def _finer(unit: str, precision: int) -> bool:
    return unit in ("second", "millisecond") or _UNIT_PRECISION[unit] > precision


def _convert(unit: str, quantity: Decimal, precision: int) -> tuple[str, Decimal]:
    """A quantity finer than the value, in the value's unit, truncated toward zero."""
    target = _PRECISION_UNIT[precision]
    if unit == "month" and target == "year":
        return target, Decimal(int(quantity / 12))
    return target, Decimal(int(quantity * _SECONDS[unit] / _SECONDS[target]))


def _apply(value: FhirDateTime, unit: str, quantity: Decimal) -> FhirDateTime:
    if unit in ("year", "month"):
        months = int(quantity) * (12 if unit == "year" else 1)
        index = value.year * 12 + (value.month or 1) - 1 + months
        year, month = divmod(index, 12)
        if not 1 <= year <= 9999:
            raise OverflowError(year)
        day = value.day
        if day is not None:
            day = min(day, calendar.monthrange(year, month + 1)[1])
        return replace(value, year=year, month=None if value.month is None else month + 1, day=day)
    if value.hour is None:  # a date at day precision (coarser units were converted above)
        moved = date(value.year, value.month or 1, value.day or 1) + timedelta(days=int(quantity))
        return replace(value, year=moved.year, month=moved.month, day=moved.day)
    clock = datetime(
        value.year,
        value.month or 1,
        value.day or 1,
        value.hour,
        value.minute or 0,
        value.second or 0,
    )
    fraction = value.fraction
    if unit in ("second", "millisecond"):
        # The finest unit is the last written digit of the seconds: count in those ticks.
        digits = len(fraction or "")
        scale = 10**digits
        delta = int(quantity * _SECONDS[unit] * scale)  # truncated toward zero
        carry, rest = divmod(int(fraction or "0") + delta, scale)
        clock += timedelta(seconds=carry)
        if fraction is not None:
            fraction = f"{rest:0{digits}d}"
    else:
        clock += timedelta(**{f"{unit}s": int(quantity)})
    return replace(
        value,
        year=clock.year,
        month=clock.month,
        day=clock.day,
        hour=clock.hour,
        minute=None if value.minute is None else clock.minute,
        second=None if value.second is None else clock.second,
        fraction=fraction,
    )


# ---------------------------------------------------------------------------------- comparison


def _key(value: FhirDateTime) -> list[int | Decimal]:
    """The components to compare, down to the value's precision; times normalised to UTC."""
    if value.hour is None:
        parts = (value.year, value.month, value.day)
        return [p for p in parts if p is not None]
    shift = _offset_minutes(value.offset) or 0
    minutes = (
        date(value.year, value.month or 1, value.day or 1).toordinal() * 1440
        + value.hour * 60
        + (value.minute or 0)
        - shift
    )
    days, minute_of_day = divmod(minutes, 1440)
    try:
        utc = date.fromordinal(days)
    except (OverflowError, ValueError):
        raise DateTimeError(f"{value} is outside years 0001-9999 in UTC") from None
    key: list[int | Decimal] = [utc.year, utc.month, utc.day, minute_of_day // 60]
    if value.minute is not None:
        key.append(minute_of_day % 60)
    if value.second is not None:
        key.append(Decimal(f"{value.second}.{value.fraction or '0'}"))
    return key


def compare(left: str, right: str) -> int | None:
    """-1, 0 or 1 as `left` is before, equal to or after `right`; None (empty) when they agree
    as far as both go but one has a precision the other lacks."""
    a, b = _key(parse(left)), _key(parse(right))
    for x, y in zip(a, b, strict=False):
        if x != y:
            return -1 if x < y else 1
    return 0 if len(a) == len(b) else None


def equals(left: str, right: str) -> bool | None:
    """FHIRPath `=` on two dates/dateTimes: True, False, or None (empty)."""
    order = compare(left, right)
    return None if order is None else order == 0


# ------------------------------------------------------------------------------ fhirpathpy glue


class _Indeterminate:
    """What the patched `compare` returns for an empty comparison.

    fhirpathpy's `<`, `>`, `<=`, `>=` test `compare(...) == -1`, `== 1`, `<= 0` and `>= 0`, and
    only look for None together with its own (wrong) precision count; every test against this
    object answers None, which those operators turn into the empty collection.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> Any:
        return None

    def __ne__(self, other: object) -> Any:
        return None

    def __lt__(self, other: object) -> Any:
        return None

    def __le__(self, other: object) -> Any:
        return None

    def __gt__(self, other: object) -> Any:
        return None

    def __ge__(self, other: object) -> Any:
        return None

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "INDETERMINATE"


_INDETERMINATE: Final = _Indeterminate()


def _plus(self: FP_DateTime, quantity: FP_Quantity) -> FP_DateTime:
    """`FP_DateTime.plus`: fhirpathpy's `-` passes the negated quantity."""
    return FP_DateTime(add(self.asStr or "", quantity.value, quantity.unit))  # type: ignore[no-untyped-call]


def _compare(self: FP_DateTime, other: object) -> int | _Indeterminate:
    """`FP_DateTime.compare`, for `<`, `<=`, `>`, `>=`."""
    if not isinstance(other, FP_DateTime):
        raise TypeError(f"cannot compare the dateTime {self.asStr} with {other!r}")
    order = compare(self.asStr or "", other.asStr or "")
    return _INDETERMINATE if order is None else order


def _equals(self: FP_DateTime, other: object) -> bool | None:
    """`FP_DateTime.equals`, for `=`, `!=` (None is empty) and `~`, `!~` (None is false)."""
    if not isinstance(other, FP_DateTime):
        return False
    return equals(self.asStr or "", other.asStr or "")


def install() -> None:
    """Make fhirpathpy's FP_DateTime use this module (idempotent; rules/fhirpath.py calls it
    when imported, so every evaluation that goes through `compile_path` has it)."""
    FP_DateTime.plus = _plus  # type: ignore[method-assign,assignment]
    FP_DateTime.compare = _compare  # type: ignore[method-assign,assignment]
    FP_DateTime.equals = _equals  # type: ignore[method-assign,assignment]
