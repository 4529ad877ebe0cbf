"""The one age function, and the three places that use it agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cds_service.patient import age_in_years
from cds_service.rules.engine import RequestData
from cds_service.scores.fhir_inputs import PatientRecord
from cds_service.smart.data import PatientData, build_view

AT = datetime(2020, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("birth_date", "at", "age"),
    [
        # full dates, birthday today / tomorrow / yesterday
        ("1960-06-15", AT, 60),
        ("1960-06-16", AT, 59),
        ("1960-06-14", AT, 60),
        ("2020-06-15", AT, 0),
        # 29 February: reached on 1 March in common years, on the day in leap years
        ("2000-02-29", datetime(2021, 2, 28, tzinfo=UTC), 20),
        ("2000-02-29", datetime(2021, 3, 1, tzinfo=UTC), 21),
        ("2000-02-29", datetime(2024, 2, 29, tzinfo=UTC), 24),
        # YYYY-MM: the month's last day is the birthday
        ("1960-06", AT, 59),
        ("1960-05", AT, 60),
        # 1960 is a leap year: 29 February is the latest birthday, reached on 1 March in 2021
        ("1960-02", datetime(2021, 2, 28, tzinfo=UTC), 60),
        ("1960-02", datetime(2021, 3, 1, tzinfo=UTC), 61),
        ("2020-06", AT, 0),  # the current month: born by `at`
        # YYYY: 31 December is the birthday
        ("1960", AT, 59),
        ("1960", datetime(2020, 12, 31, tzinfo=UTC), 60),
        ("2020", AT, 0),  # the current year: born by `at`
        # dateTime birth dates count by the date as written
        ("1960-06-15T23:30:00+02:00", AT, 60),
        ("1960-06-16T00:30:00-05:00", AT, 59),
        ("1960-06-15T08:00:00Z", AT, 60),
        # `at` counts by its UTC date
        ("1960-06-16", datetime(2020, 6, 16, 1, 0, tzinfo=timezone(timedelta(hours=3))), 59),
        ("1960-06-15", datetime(2020, 6, 15, 12, 0), 60),  # naive: UTC
    ],
)
def test_age(birth_date: str, at: datetime, age: int) -> None:
    assert age_in_years(birth_date, at) == age


@pytest.mark.parametrize(
    "birth_date",
    [
        None,
        "",
        "garbage",
        "1960-13-01",
        "1960-02-30",
        "1960-00",
        "60-01-01",
        "1960-1-1",
        " 1960-01-01",
        "1960-01-01T25:00:00",
        "2020-06-16",  # after `at`
        "2020-07",
        "2021",
    ],
)
def test_no_age(birth_date: str | None) -> None:
    assert age_in_years(birth_date, AT) is None


def test_non_text_is_no_age() -> None:
    assert age_in_years(1960, AT) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("birth_date", ["1960", "1960-06", "1960-06-16", "1960-06-16T00:00:00Z"])
def test_rules_scores_and_view_see_the_same_age(birth_date: str) -> None:
    patient = {"resourceType": "Patient", "id": "p", "birthDate": birth_date, "gender": "male"}
    expected = age_in_years(birth_date, AT)
    rules = RequestData({"patientId": "p"}, {"patient": patient}, now=AT).variables()["age"]
    score = PatientRecord([patient], AT).age()
    view = build_view(
        PatientData(patient, [patient], []),
        now=AT,
        need_banner=True,
        context=None,
        style_url=None,
        logout_url="/logout",
        relaunch_url=None,
    )
    assert expected == 59
    assert rules == [expected]
    assert score is not None and score[0] == expected
    assert view.banner is not None and view.banner.age == expected
