"""Snooze policies: which override snoozes a rule, from when, until when."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from cds_service.services.suppression import (
    NO_OVERRIDES,
    Override,
    RecordedOverrides,
    Snooze,
    SnoozePolicy,
)

DECLINED = ("urn:cds-service:override-reason", "patient-declined")
POLICY = SnoozePolicy(frozenset({DECLINED}), 6, "month")
NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def override(at: datetime, code: str = "patient-declined", rule: str = "r") -> Override:
    return Override(rule, "urn:cds-service:override-reason", code, at)


def test_an_override_with_a_listed_reason_snoozes_for_the_period() -> None:
    declined = override(datetime(2026, 6, 1, tzinfo=UTC))
    assert POLICY.snooze([declined], NOW) == Snooze(declined, datetime(2026, 12, 1, tzinfo=UTC))
    assert POLICY.snooze([declined], datetime(2026, 12, 1, tzinfo=UTC)) is None  # it has ended


def test_the_latest_listed_override_counts() -> None:
    old = override(datetime(2026, 1, 1, tzinfo=UTC))
    recent = override(datetime(2026, 10, 1, tzinfo=UTC))
    other = override(datetime(2026, 11, 1, tzinfo=UTC), code="given-elsewhere")
    assert POLICY.snooze([recent, other, old], NOW) == Snooze(
        recent, datetime(2027, 4, 1, tzinfo=UTC)
    )


def test_other_reasons_and_systems_do_not_snooze() -> None:
    assert POLICY.snooze([override(NOW, code="given-elsewhere")], NOW) is None
    elsewhere = Override("r", "urn:another-system", "patient-declined", NOW)
    assert POLICY.snooze([elsewhere], NOW) is None
    assert POLICY.snooze([], NOW) is None


def test_an_override_stamped_in_the_future_snoozes_from_now() -> None:
    future = override(datetime(2030, 1, 1, tzinfo=UTC))
    assert POLICY.snooze([future], NOW) == Snooze(future, datetime(2027, 5, 28, 12, tzinfo=UTC))


def test_sources_given_up_front() -> None:
    recorded = RecordedOverrides((override(NOW, rule="a"), override(NOW, rule="b")))
    assert asyncio.run(recorded.overrides("p1", ["b"])) == [override(NOW, rule="b")]
    assert asyncio.run(NO_OVERRIDES.overrides("p1", ["a"])) == ()
