"""FHIRPath date arithmetic and comparison (rules/fhirdates.py) against datetime/dateutil.

The oracle below computes what the spec says with Python's aware datetimes, dateutil's
relativedelta (calendar months and years, clamped to the month's end) and exact fractions; the
grid covers every precision, offset and unit, hypothesis the values in between.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from dateutil.relativedelta import relativedelta
from fhirpathpy.engine.nodes import FP_DateTime
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.rules.engine import RequestData
from cds_service.rules.fhirdates import DateTimeError, add, compare, equals, parse
from cds_service.rules.fhirpath import compile_path

OFFSETS = ("Z", "+01:00", "-05:00", "+05:45", None)
# precision name → (number of components, fraction digits)
PRECISIONS = {
    "YYYY": (1, 0),
    "YYYY-MM": (2, 0),
    "YYYY-MM-DD": (3, 0),
    "hh": (4, 0),
    "hh:mm": (5, 0),
    "hh:mm:ss": (6, 0),
    **{f"hh:mm:ss.{'f' * n}": (6, n) for n in range(1, 7)},
}
UNITS = {
    **dict.fromkeys(("year", "years"), "year"),
    **dict.fromkeys(("month", "months"), "month"),
    **dict.fromkeys(("week", "weeks", "'wk'"), "week"),
    **dict.fromkeys(("day", "days", "'d'"), "day"),
    **dict.fromkeys(("hour", "hours", "'h'"), "hour"),
    **dict.fromkeys(("minute", "minutes", "'min'"), "minute"),
    **dict.fromkeys(("second", "seconds", "'s'"), "second"),
    **dict.fromkeys(("millisecond", "milliseconds", "'ms'"), "millisecond"),
}
SECONDS = {
    "year": Fraction(365 * 86400),
    "month": Fraction(30 * 86400),
    "day": Fraction(86400),
    "hour": Fraction(3600),
    "minute": Fraction(60),
    "second": Fraction(1),
    "millisecond": Fraction(1, 1000),
}
LEVELS = ("year", "month", "day", "hour", "minute", "second")


@dataclass(frozen=True)
class Value:
    """A generated date/dateTime: an aware (or naive, for dates) datetime and how it is written."""

    moment: datetime
    components: int
    digits: int
    offset: str | None

    @property
    def text(self) -> str:
        return render(self.moment, self.components, self.digits, self.offset)


def tzinfo(offset: str | None) -> timezone:
    if offset in (None, "Z"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])))


def render(moment: datetime, components: int, digits: int, offset: str | None) -> str:
    formats = ("", "-%m", "-%m-%d", "-%m-%dT%H", "-%m-%dT%H:%M", "-%m-%dT%H:%M:%S")
    text = f"{moment.year:04d}" + moment.strftime(formats[components - 1])  # %Y is not padded
    if digits:
        text += "." + f"{moment.microsecond:06d}"[:digits]
    if components >= 4:
        text += offset or ""
    return text


def expected_add(value: Value, amount: Fraction, unit: str) -> str:
    """The spec's result, computed with datetime/dateutil and exact fractions."""
    name = UNITS[unit]
    if name == "week":
        name, amount = "day", amount * 7
    if name not in ("second", "millisecond"):
        amount = Fraction(math.trunc(amount))  # calendar units: the decimal part is ignored
    level = LEVELS[value.components - 1]
    seconds = amount * SECONDS[name]
    if level == "second" and name in ("second", "millisecond"):  # ticks of the last digit
        ticks = math.trunc(seconds * 10**value.digits)
        step = timedelta(microseconds=ticks * 10 ** (6 - value.digits))
        return render(value.moment + step, 6, value.digits, value.offset)
    finer = name == "millisecond" or LEVELS.index(name) > LEVELS.index(level)
    if finer:  # converted to the value's precision, truncated toward zero
        if name == "month" and level == "year":
            amount = Fraction(math.trunc(amount / 12))
        else:
            amount = Fraction(math.trunc(seconds / SECONDS[level]))
        name = level
    n = int(amount)
    step_by = {
        "year": relativedelta(years=n),
        "month": relativedelta(months=n),
        "day": timedelta(days=n),
        "hour": timedelta(hours=n),
        "minute": timedelta(minutes=n),
        "second": timedelta(seconds=n),
    }[name]
    return render(value.moment + step_by, value.components, value.digits, value.offset)


def value_at(moment: datetime, precision: str, offset: str | None) -> Value:
    components, digits = PRECISIONS[precision]
    if components < 4:
        offset = None
    defaults = {"month": 1, "day": 1, "hour": 0, "minute": 0, "second": 0}
    fields = ("month", "day", "hour", "minute", "second")
    truncated = moment.replace(
        **{field: defaults[field] for field in fields[components - 1 :]},
        microsecond=moment.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits),
        tzinfo=tzinfo(offset),
    )
    return Value(truncated, components, digits, offset)


# ------------------------------------------------------------------------------- the grid

GRID_MOMENTS = (
    datetime(2026, 11, 28, 12, 0, 0, 123456),
    datetime(2024, 2, 29, 23, 59, 59, 999999),  # a leap day, a second before midnight
    datetime(2014, 1, 31, 0, 0, 0, 100000),  # a 31st: month arithmetic clamps
    datetime(2026, 3, 28, 1, 30, 0),  # the eve of Europe's 2026 DST change
)
AMOUNTS = (Fraction(1), Fraction(-1), Fraction(13), Fraction(-400), Fraction(77, 10))


@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: o or "no-offset")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_grid_every_unit_matches_datetime(precision: str, offset: str | None) -> None:
    for moment in GRID_MOMENTS:
        value = value_at(moment, precision, offset)
        for unit in UNITS:
            for amount in AMOUNTS:
                got = add(value.text, Decimal(amount.numerator) / amount.denominator, unit)
                assert got == expected_add(value, amount, unit), (value.text, amount, unit)


@pytest.mark.parametrize("offset", OFFSETS, ids=lambda o: o or "no-offset")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_grid_round_trip(precision: str, offset: str | None) -> None:
    """(x + q) - q == x for every unit; for months and years unless the day was clamped."""
    for moment in GRID_MOMENTS:
        value = value_at(moment, precision, offset)
        for unit, name in UNITS.items():
            for amount in (1, 13, -400):
                there = add(value.text, amount, unit)
                back = add(there, -amount, unit)
                clamped = name in ("year", "month") and value.components >= 3 and moment.day > 28
                if not clamped:
                    assert back == value.text, (value.text, amount, unit, there)


def test_instants_move_by_exactly_the_quantity() -> None:
    """With a time and an offset, hours and smaller move the instant by exactly the quantity."""
    for offset in OFFSETS[:4]:
        start = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=tzinfo(offset))
        text = render(start, 6, 6, offset)
        for amount, unit, delta in (
            (-6, "hours", timedelta(hours=-6)),
            (-90, "minutes", timedelta(minutes=-90)),
            (-7200, "'s'", timedelta(seconds=-7200)),
            (-1500, "'ms'", timedelta(milliseconds=-1500)),
        ):
            moved = datetime.fromisoformat(add(text, amount, unit))
            assert moved == start + delta
            assert moved.utcoffset() == start.utcoffset()


# ------------------------------------------------------------------------------- properties

OFFSET = st.sampled_from(OFFSETS)
MOMENT = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31))
PRECISION = st.sampled_from(list(PRECISIONS))


@st.composite
def values(draw: st.DrawFn, precision: st.SearchStrategy[str] = PRECISION) -> Value:
    return value_at(draw(MOMENT), draw(precision), draw(OFFSET))


@settings(max_examples=400, deadline=None)
@given(values(), st.sampled_from(list(UNITS)), st.integers(-1000, 1000))
def test_add_matches_datetime(value: Value, unit: str, amount: int) -> None:
    assert add(value.text, amount, unit) == expected_add(value, Fraction(amount), unit)


@settings(max_examples=200, deadline=None)
@given(
    values(), st.sampled_from(["'s'", "seconds", "'ms'"]), st.decimals(-(10**6), 10**6, places=4)
)
def test_decimal_seconds_match_datetime(value: Value, unit: str, amount: Decimal) -> None:
    assert add(value.text, amount, unit) == expected_add(value, Fraction(amount), unit)


@settings(max_examples=300, deadline=None)
@given(values(), st.sampled_from(list(UNITS)), st.integers(-1000, 1000))
def test_round_trip(value: Value, unit: str, amount: int) -> None:
    back = add(add(value.text, amount, unit), -amount, unit)
    if UNITS[unit] in ("year", "month") and value.components >= 3 and value.moment.day > 28:
        return  # clamped to a shorter month: not reversible (2024-01-31 + 1 month - 1 month)
    assert back == value.text


def reference_key(value: Value) -> list[object]:
    """Components to compare: a value with a time normalised to UTC by datetime itself."""
    moment = value.moment.astimezone(UTC) if value.components >= 4 else value.moment
    parts: list[object] = [moment.year, moment.month, moment.day, moment.hour, moment.minute]
    parts.append(Fraction(moment.second) + Fraction(moment.microsecond, 10**6))
    return parts[: value.components]


def reference_compare(a: Value, b: Value) -> int | None:
    ka, kb = reference_key(a), reference_key(b)
    for x, y in zip(ka, kb, strict=False):
        if x != y:
            return -1 if x < y else 1  # type: ignore[operator]
    return 0 if len(ka) == len(kb) else None


@settings(max_examples=500, deadline=None)
@given(values(), values())
def test_compare_matches_utc_components(a: Value, b: Value) -> None:
    assert compare(a.text, b.text) == reference_compare(a, b)
    assert compare(b.text, a.text) == (None if (c := reference_compare(a, b)) is None else -c)
    order = compare(a.text, b.text)
    assert equals(a.text, b.text) == (None if order is None else order == 0)


SECOND_PRECISIONS = st.sampled_from([p for p, (n, _) in PRECISIONS.items() if n == 6])


@settings(max_examples=500, deadline=None)
@given(values(SECOND_PRECISIONS), values(SECOND_PRECISIONS))
def test_compare_with_seconds_is_comparing_instants(a: Value, b: Value) -> None:
    """Seconds and their fraction are one decimal precision: any two values with seconds (any
    number of digits, any offset) compare as their UTC instants."""
    expected = (a.moment > b.moment) - (a.moment < b.moment)
    assert compare(a.text, b.text) == expected


@settings(max_examples=200, deadline=None)
@given(values(), values())
def test_compare_agrees_through_fhirpath(a: Value, b: Value) -> None:
    order = compare(a.text, b.text)
    variables = {"a": FP_DateTime(a.text), "b": FP_DateTime(b.text)}  # type: ignore[no-untyped-call]
    for operator, truth in (("<", -1), (">", 1)):
        result = compile_path(f"%a {operator} %b")({}, variables)
        assert result == ([] if order is None else [order == truth])
    equal = compile_path("%a = %b")({}, variables)
    assert equal == ([] if order is None else [order == 0])
    assert compile_path("%a <= %b")({}, variables) == ([] if order is None else [order <= 0])


# ------------------------------------------------------------------------------- examples

NOW = "2026-11-28T12:00:00.123456Z"


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("%now - 1 year", NOW, "2025-11-28T12:00:00.123456Z"),  # was [''] in fhirpathpy 2.2.4
        ("%now - 6 hours", NOW, "2026-11-28T06:00:00.123456Z"),  # was UnboundLocalError
        ("%now - 6 hours", "2026-11-28T12:00:00+01:00", "2026-11-28T06:00:00+01:00"),  # same
    ],
)
def test_the_issue_reproductions(expression: str, now: str, expected: str) -> None:
    (result,) = compile_path(expression)({}, {"now": FP_DateTime(now)})  # type: ignore[no-untyped-call]
    assert isinstance(result, FP_DateTime)
    assert result.asStr == expected


@pytest.mark.parametrize(
    ("value", "amount", "unit", "expected"),
    [
        ("2014", 24, "months", "2016"),
        ("2014", 23, "months", "2015"),
        ("2014", 400, "days", "2015"),
        ("2014", -400, "days", "2013"),
        ("2014-01", 45, "days", "2014-02"),
        ("2014-01", 1, "year", "2015-01"),
        ("2014-01-01", 36, "hours", "2014-01-02"),
        ("2014-01-01", -36, "hours", "2013-12-31"),
        ("2014-01-01T10Z", 90, "minutes", "2014-01-01T11Z"),
        ("2014-01-01T10:30+01:00", 150, "'s'", "2014-01-01T10:32+01:00"),
        ("2014-01-01T00:00:00Z", 1500, "'ms'", "2014-01-01T00:00:01Z"),
        ("2014-01-01T00:00:00Z", -1500, "'ms'", "2013-12-31T23:59:59Z"),
        ("2014-01-01T00:00:00.1Z", 25, "'ms'", "2014-01-01T00:00:00.1Z"),
        ("2014-01-01T00:00:00.100Z", 25, "'ms'", "2014-01-01T00:00:00.125Z"),
        ("2014-01-01T00:00:00.000000001Z", 1, "'ms'", "2014-01-01T00:00:00.001000001Z"),
        ("1973-12-25", Decimal("7.7"), "days", "1974-01-01"),
        ("2024-02-29", 1, "year", "2025-02-28"),  # leap day
        ("2024-02-29", 4, "years", "2028-02-29"),
        ("2014-01-31", 1, "month", "2014-02-28"),
        ("2024-01-31T08:00:00-05:00", 1, "month", "2024-02-29T08:00:00-05:00"),
        # DST: the wall clock moves in the written offset (Paris went to +02:00 that night)
        ("2026-03-28T12:00:00+01:00", 1, "day", "2026-03-29T12:00:00+01:00"),
        ("2026-03-28T12:00:00+01:00", 24, "hours", "2026-03-29T12:00:00+01:00"),
        ("2026-11-28", -1, "year", "2025-11-28"),  # %today
        ("2026-11-28", -6, "hours", "2026-11-28"),  # finer than a day: truncated to 0 days
    ],
)
def test_spec_examples(value: str, amount: int | Decimal, unit: str, expected: str) -> None:
    assert add(value, amount, unit) == expected


@pytest.mark.parametrize("unit", ["'a'", "'mo'", "'month'", "'cm'", "kg"])
def test_units_that_are_not_calendar_durations_are_errors(unit: str) -> None:
    with pytest.raises(DateTimeError):
        add("2014-01-01", 1, unit)


@pytest.mark.parametrize(
    "text", ["2015-02-30", "2015-13", "2015-01-01T24:00Z", "2015-01-01T10:00+15:00", "2015T10", ""]
)
def test_invalid_values_are_errors(text: str) -> None:
    with pytest.raises(DateTimeError):
        parse(text)


def test_results_outside_years_1_to_9999_are_errors() -> None:
    with pytest.raises(DateTimeError):
        add("9999-12-31", 1, "day")
    with pytest.raises(DateTimeError):
        add("0001-01-01", -1, "month")
    with pytest.raises(DateTimeError):
        compare("0001-01-01T00:00+01:00", "2014")


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ("2012-04-15T15:30:31", "2012-04-15T15:30:31.0", 0),  # one decimal precision
        ("2012-04-15T15:30:31", "2012-04-15T15:30:31.1", -1),
        ("2018-03", "2018-03-01", None),
        ("2018-03", "2018-04-01", -1),  # differs before the missing precision
        ("2018-03-01T10:30Z", "2018-03-01T10:30:00Z", None),
        ("2012-04-15T15:00:00+02:00", "2012-04-15T16:00:00+03:00", 0),
        ("2017-11-05T01:30:00.0-04:00", "2017-11-05T01:15:00.0-05:00", -1),
        ("2012-04-15T15:00:00Z", "2012-04-15T10:00:00", 1),  # no offset is UTC
        ("2026-11-28T00:30:00+01:00", "2026-11-28", -1),  # 2026-11-27 in UTC
        ("2026-11-28T12:00:00+01:00", "2026-11-28", None),  # same day, then no hour
    ],
)
def test_comparison_examples(left: str, right: str, expected: int | None) -> None:
    assert compare(left, right) == expected


def test_empty_comparisons_are_empty_through_fhirpath() -> None:
    for expression in ("@2018-03 < @2018-03-01", "@2018-03-01T10:30Z >= @2018-03-01T10:30:00Z"):
        assert compile_path(expression)({}, {}) == []
    assert compile_path("@2012-01 ~ @2012")({}, {}) == [False]
    assert compile_path("@2012-04-15T15:30:31Z ~ @2012-04-15T15:30:31.0Z")({}, {}) == [True]


# ------------------------------------------------------------------------------- end to end


def engine_variables(now: datetime) -> dict[str, Any]:
    """%now and %today exactly as rules/engine.py builds them for a call."""
    return RequestData(context={}, prefetch={}, now=now).variables()


def observation(effective: datetime) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "potassium"},
        "effectiveDateTime": effective.isoformat(timespec="seconds"),
    }


@pytest.mark.parametrize("expression", ["effectiveDateTime", "effective.ofType(dateTime)"])
def test_rule_window_against_the_real_clock(expression: str) -> None:
    """`… >= %now - 6 hours` gives the same truth whether %now carries microseconds (as the
    engine renders the real clock), is whole seconds, or is written in another offset."""
    now = datetime.now(UTC)
    rule = compile_path(f"{expression} >= %now - 6 hours")
    clocks = [
        engine_variables(now),
        {"now": FP_DateTime(now.replace(microsecond=0).isoformat().replace("+00:00", "Z"))},  # type: ignore[no-untyped-call]
        {"now": FP_DateTime(now.astimezone(tzinfo("-05:00")).isoformat())},  # type: ignore[no-untyped-call]
        {"now": FP_DateTime(now.astimezone(tzinfo("+05:45")).isoformat())},  # type: ignore[no-untyped-call]
    ]
    assert "." in clocks[0]["now"].asStr and clocks[0]["now"].asStr.endswith("Z")
    for minutes, inside in ((-359, True), (-361, False), (-5, True), (-24 * 60, False)):
        for offset in OFFSETS[1:4]:
            effective = (now + timedelta(minutes=minutes)).astimezone(tzinfo(offset))
            resource = observation(effective)
            for variables in clocks:
                assert rule(resource, variables) == [inside], (resource, variables["now"])


def test_today_against_datetimes_and_in_arithmetic() -> None:
    variables = engine_variables(datetime(2026, 11, 28, 12, 0, 0, 654321, tzinfo=UTC))
    assert variables["today"].asStr == "2026-11-28"

    def run(expression: str, resource: object = None) -> list[object]:
        return compile_path(expression)(resource or {}, variables)

    assert run("(%today - 1 year).toString()") == ["2025-11-28"]
    assert run("%today - 1 year < %now") == [True]
    assert run("@2026-11-27T23:30:00-01:00 < %today") == []  # 2026-11-28 in UTC: same day
    assert run("@2026-11-28T00:30:00+01:00 < %today") == [True]  # 2026-11-27 in UTC
    assert run("@2026-11-29T00:30:00Z > %today") == [True]
    born = {"resourceType": "Patient", "birthDate": "1948-05-02"}
    assert run("birthDate < %today - 65 years", born) == [True]
    assert run("birthDate <= %now", born) == [True]


def test_to_string_of_the_clock_is_the_value_as_written() -> None:
    variables = engine_variables(datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC))
    assert compile_path("%now.toString()")({}, variables) == ["2026-11-28T12:00:00.123456Z"]
    assert compile_path("(%now - 1 day).toString()")({}, variables) == [
        "2026-11-27T12:00:00.123456Z"
    ]


def test_days_in_the_offset_of_the_value_across_dst() -> None:
    """Europe/Paris moved from +01:00 to +02:00 on 2026-03-29: a value keeps its own offset."""
    assert add("2026-03-28T12:00:00+01:00", 1, "day") == "2026-03-29T12:00:00+01:00"
    assert compare("2026-03-29T12:00:00+01:00", "2026-03-29T13:00:00+02:00") == 0
