"""FHIR dates and dateTimes as aware datetimes, each text parsed once (the scores' readers and
the data index both remember what a text gave): remembered answers are the answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cds_service.rules import index
from cds_service.rules.index import parse_instant
from cds_service.scores import fhir_json
from cds_service.scores.fhir_json import parse_fhir_datetime

MINUS_FOUR = timezone(timedelta(hours=-4))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-03-12T10:15:42-04:00", datetime(2019, 3, 12, 10, 15, 42, tzinfo=MINUS_FOUR)),
        ("2019-03-12T14:15:42Z", datetime(2019, 3, 12, 14, 15, 42, tzinfo=UTC)),
        ("2019-03-12", datetime(2019, 3, 12, tzinfo=UTC)),
        ("2019-03", datetime(2019, 3, 1, tzinfo=UTC)),
        ("2019", datetime(2019, 1, 1, tzinfo=UTC)),
        ("2019-13-01", None),
        ("yesterday", None),
        ("", None),
        (2019, None),
        (None, None),
    ],
)
def test_the_scores_dates(text: Any, expected: datetime | None) -> None:
    for _ in range(2):  # the second answer is the remembered one
        assert parse_fhir_datetime(text) == expected


# Texts shaped like FHIR's, valid or not, many repeated (as a record's timestamps are).
TEXTS = st.one_of(
    st.sampled_from(
        ["2019-03-12T10:15:42-04:00", "2019-03-12T10:15:42Z", "2019-03-12", "2019", "x", ""]
    ),
    st.from_regex(
        r"\A(19|20)\d\d(-[01]\d(-[0-3]\d(T[0-2]\d:[0-5]\d(:[0-5]\d(\.\d{1,9})?)?"
        r"(Z|[+-][01]\d:[0-5]\d)?)?)?)?\Z"
    ),
    st.text(max_size=30),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=8))
@example(["2019-03-12T10:15:42-04:00", "2019-03-12T10:15:42-04:00", "2019-03-12T14:15:42Z"])
def test_remembered_answers_are_the_parsers_answers(texts: list[str]) -> None:
    for text in texts + texts:
        assert parse_fhir_datetime(text) == fhir_json._parse_text.__wrapped__(text)
        assert parse_instant(text) == (
            index._parse_text.__wrapped__(text) if len(text) >= 4 else None
        )
