"""Snoozing rules from feedback: a fired rule whose `suppress:` reasons were given when a card of
it was overridden for the patient shows no card until the period has passed.

The rules are evaluated first, as always (statistics stay honest); then, only when a rule with a
`suppress:` block fired, the call's suppression source is asked once for the patient's overrides
of those rules. A snoozed rule's outcome becomes `suppressed`, with the override and the end of
the snooze as its reason, and loses its card.

The lookup fails open: when the source fails or does not answer within the call's remaining
budget, the cards are shown (and a warning logged): a card shown once more is better than a call
that fails or a card hidden on a guess.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime

from cds_service.rules.compiled import CompiledRule
from cds_service.rules.engine import RuleOutcome
from cds_service.services.suppression import Override, RecordedOverrides, SuppressionSource

__all__ = ["apply_snoozes", "given_overrides"]

log = logging.getLogger(__name__)

#: The least time the lookup is given, even when the call's budget is nearly spent.
MIN_LOOKUP_SECONDS = 0.05


async def apply_snoozes(
    rules: Sequence[CompiledRule],
    outcomes: Sequence[RuleOutcome],
    source: SuppressionSource,
    *,
    patient_id: str | None,
    now: datetime,
    deadline: float,
) -> None:
    """Mark `suppressed` each fired rule (of `rules`, paired with `outcomes`) that an override
    snoozes for the patient at `now`; `deadline` is a `time.perf_counter()` value."""
    fired = [
        (rule, outcome)
        for rule, outcome in zip(rules, outcomes, strict=True)
        if outcome.status == "fired" and rule.suppress is not None
    ]
    if not fired or not patient_id:
        return
    remaining = deadline - time.perf_counter()
    timeout = None if remaining == float("inf") else max(remaining, MIN_LOOKUP_SECONDS)
    try:
        async with asyncio.timeout(timeout):  # no task per lookup, as wait_for makes
            overrides = await source.overrides(patient_id, sorted({rule.id for rule, _ in fired}))
    except Exception as exc:  # fail open: the cards are shown
        log.warning(
            "overrides not looked up (%s): rules %s not checked for a snooze",
            type(exc).__name__,
            ", ".join(sorted(rule.id for rule, _ in fired)),
        )
        return
    for rule, outcome in fired:
        assert rule.suppress is not None
        snooze = rule.suppress.snooze((o for o in overrides if o.rule_id == rule.id), now)
        if snooze is None:
            continue
        outcome.status = "suppressed"
        outcome.card = None
        override = snooze.override
        outcome.reason = (
            f"snoozed until {snooze.until.isoformat()}: overridden ({override.code}) "
            f"at {override.at.isoformat()}"
        )


def given_overrides(rule: CompiledRule, given: Iterable[tuple[str, datetime]]) -> RecordedOverrides:
    """Overrides of `rule`'s cards with these reason codes at these times, as the feedback store
    gives them (each code's system is the card's, as an EHR sends it back): a rule test case's
    `feedback:`, `rules explain --override`. ValueError names a code the card does not offer."""
    systems = {reason.code: reason.system for reason in rule.rule.card.overrideReasons or ()}
    recorded = []
    for code, at in given:
        if code not in systems:
            offered = ", ".join(sorted(systems)) or "none"
            raise ValueError(
                f"'{code}' is not a code of rule {rule.id}'s card.overrideReasons "
                f"(its codes: {offered})"
            )
        recorded.append(Override(rule.id, systems[code], code, at))
    return RecordedOverrides(tuple(recorded))
