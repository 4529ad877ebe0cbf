"""Suppression from feedback (snooze): overrides that keep a rule's card from a patient a while.

A rule may declare which override reasons snooze it, and for how long (`suppress:` in its YAML,
`rules/model.py`). When a card of the rule was overridden for a patient with one of them, the
rule still evaluates (its statistics stay honest) but its outcome is `suppressed` and no card is
shown for that patient, in that tenant, until the period after the override has passed.

`SnoozePolicy` is a rule's declaration, ready to apply to the overrides found for a patient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cds_service.clock import shift

__all__ = ["Override", "Snooze", "SnoozePolicy"]


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
