"""Suppression from feedback (snooze): overrides that keep a rule's card from a patient a while.

A rule may declare which override reasons snooze it, and for how long (`suppress:` in its YAML,
`rules/model.py`). When a card of the rule was overridden for a patient with one of them, the
rule still evaluates (its statistics stay honest) but its outcome is `suppressed` and no card is
shown for that patient, in that tenant, until the period after the override has passed.

`SnoozePolicy` is a rule's declaration, ready to apply to the overrides found for a patient.
The rule engine asks a `SuppressionSource` for those overrides, injected into the one evaluation
pipeline as the score source is (`rules/pipeline.evaluate_call`), so every path decides alike:

- serving: the feedback store, for the calling tenant (`feedback.overrides.StoredOverrides`:
  the shared database, so an override sent through any replica counts);
- `rules test`: a case's `feedback:`; `rules explain`: its `--override` options
  (`RecordedOverrides`);
- elsewhere (benchmarks, population jobs): `NO_OVERRIDES`.

It is asked only when a rule with a `suppress:` block fires, for that patient and those rules.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cds_service.clock import shift

__all__ = [
    "NO_OVERRIDES",
    "NoOverrides",
    "Override",
    "RecordedOverrides",
    "Snooze",
    "SnoozePolicy",
    "SuppressionSource",
]


@dataclass(frozen=True, slots=True)
class Override:
    """A card of rule `rule_id` overridden for a patient with the coded reason `system|code`, at
    `at` (the feedback's outcomeTimestamp)."""

    rule_id: str
    system: str
    code: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Snooze:
    """Why a rule is snoozed: the override that started it, and when it ends."""

    override: Override
    until: datetime


@dataclass(frozen=True, slots=True)
class SnoozePolicy:
    """A rule's `suppress:` block: the override reasons (system, code) that snooze it, and for
    how long (`amount` calendar `unit`s: day, week, month or year)."""

    reasons: frozenset[tuple[str, str]]
    amount: int
    unit: str

    def snooze(self, overrides: Iterable[Override], now: datetime) -> Snooze | None:
        """The snooze in force at `now`, from the latest override with one of the reasons (one
        stamped after `now` counts from `now`); None when there is none or it has ended."""
        wanted = [o for o in overrides if (o.system, o.code) in self.reasons]
        if not wanted:
            return None
        latest = max(wanted, key=lambda o: o.at)
        until = shift(min(latest.at, now), self.amount, self.unit)
        return Snooze(latest, until) if now < until else None


class SuppressionSource(Protocol):
    """The overrides recorded for a patient, for one tenant (the source is the tenant's)."""

    async def overrides(self, patient_id: str, rule_ids: Collection[str]) -> Sequence[Override]:
        """The overrides with a coded reason of the cards of `rule_ids` shown to the patient
        (at least the latest per rule and reason; older ones may be left out)."""
        ...


class NoOverrides:
    """No override was ever recorded: nothing is snoozed."""

    async def overrides(self, patient_id: str, rule_ids: Collection[str]) -> Sequence[Override]:
        return ()


NO_OVERRIDES = NoOverrides()


@dataclass(frozen=True, slots=True)
class RecordedOverrides:
    """Overrides given up front: a rule test case's `feedback:`, `rules explain --override`."""

    recorded: tuple[Override, ...]

    async def overrides(self, patient_id: str, rule_ids: Collection[str]) -> Sequence[Override]:
        return [o for o in self.recorded if o.rule_id in rule_ids]
