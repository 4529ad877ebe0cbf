"""The workbench's figures: per rule, over a window, what it did and how clinicians answered.

Everything comes from the shared database (`CDS_DATABASE_URL`: PostgreSQL across replicas), so
every replica shows the same figures:

- calls: hook calls to the rule's service on the rule's hook answered 200 (`cds_audit`); a rule
  added during the window is counted over the whole window;
- cards: cards of the rule returned to EHRs (`cds_issued_cards`); shadow, suppressed, skipped,
  errors (error and timeout): the audited rule outcomes; fired = cards + shadow;
- fire rate = fired / calls; card rate: calls of the service and hook answered with a card;
- accepted, overridden and the override reasons: `cds_feedback`; answered: distinct cards with
  feedback; ignored = cards - answered (a card nobody sent feedback on).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cds_service.audit.store import AuditStore
from cds_service.audit.summary import Window, summarize
from cds_service.clock import system_clock
from cds_service.feedback.store import FeedbackStore
from cds_service.rules.compiled import CompiledRule

__all__ = ["RuleFigures", "daily", "rule_figures", "window_of"]

MAX_DAYS = 366


def window_of(days: int, now: datetime) -> Window:
    """The last `days` days up to `now`."""
    return Window(since=now - timedelta(days=days), until=now + timedelta(seconds=1))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass(slots=True)
class RuleFigures:
    """One rule (all its versions) over the window."""

    rule: str
    service: str
    hook: str
    version: str  # the version served now ("-" when the rule is no longer served)
    status: str
    title: str
    calls: int = 0
    carded_calls: int = 0
    cards: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    overridden: int = 0
    answered: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    reason_names: dict[str, str] = field(default_factory=dict)
    versions: set[str] = field(default_factory=set)

    @property
    def fired(self) -> int:
        return self.cards + self.outcomes["shadow"]

    @property
    def ignored(self) -> int:
        return max(0, self.cards - self.answered)

    def to_json(self) -> dict[str, Any]:
        reasons = [
            {"code": code, "display": self.reason_names.get(code, code), "count": n}
            for code, n in self.reasons.most_common()
        ]
        return {
            "rule": self.rule,
            "title": self.title,
            "service": self.service,
            "hook": self.hook,
            "version": self.version,
            "status": self.status,
            "versionsSeen": sorted(self.versions),
            "calls": self.calls,
            "fired": self.fired,
            "fireRate": _rate(self.fired, self.calls),
            "cardRate": _rate(self.carded_calls, self.calls),
            "cards": self.cards,
            "shadow": self.outcomes["shadow"],
            "suppressed": self.outcomes["suppressed"],
            "skipped": self.outcomes["skipped"],
            "errors": self.outcomes["error"] + self.outcomes["timeout"],
            "accepted": self.accepted,
            "overridden": self.overridden,
            "ignored": self.ignored,
            "acceptanceRate": _rate(self.accepted, self.cards),
            "overrideReasons": reasons,
        }


def _served(rule: CompiledRule) -> RuleFigures:
    names = {c.code: c.display or c.code for c in rule.rule.card.overrideReasons or []}
    return RuleFigures(
        rule=rule.id,
        service=rule.rule.service,
        hook=rule.rule.hook,
        version=str(rule.rule.version),
        status=rule.rule.status,
        title=rule.rule.title,
        reason_names=names,
    )


async def rule_figures(
    audit: AuditStore,
    feedback: FeedbackStore,
    served: Mapping[str, CompiledRule],
    window: Window,
) -> list[RuleFigures]:
    """Every served rule, and every rule seen in the window, with its figures (by rule id)."""
    issued, outcomes = await audit.rule_counts(window)
    counts = await feedback.counts_by_rule(
        since=window.since, until=window.until, tenant=window.tenant
    )
    calls = await audit.call_counts(window)
    answered = await feedback.answered_by_rule(since=window.since, until=window.until)
    figures = {rule_id: _served(rule) for rule_id, rule in served.items()}
    for summary in summarize(issued, outcomes, counts):
        if summary.rule == "-":
            continue  # feedback stored before rows carried their rule
        entry = figures.get(summary.rule)
        if entry is None:
            entry = figures[summary.rule] = RuleFigures(
                summary.rule, summary.service, "-", "-", "retired", summary.rule
            )
        entry.versions.add(summary.version)
        entry.cards += summary.cards
        entry.outcomes.update(summary.outcomes)
        entry.accepted += summary.feedback["accepted"]
        entry.overridden += summary.feedback["overridden"]
        entry.reasons.update(summary.override_reasons)
        entry.answered += answered.get((summary.service, summary.rule, summary.version), 0)
    for entry in figures.values():
        entry.calls, entry.carded_calls = calls.get((entry.service, entry.hook), (0, 0))
    return sorted(figures.values(), key=lambda f: (f.service, f.hook, f.rule))


def daily(
    window: Window,
    issued: list[datetime],
    feedback: list[tuple[datetime, str]],
) -> list[dict[str, Any]]:
    """Cards issued and feedback by outcome per UTC day of the window (empty days included)."""
    end = (window.until or system_clock()).astimezone(UTC).date()
    seen = [*issued, *(t for t, _ in feedback)]
    start = window.since or (min(seen) if seen else None) or system_clock()
    first: date = start.astimezone(UTC).date()
    first = max(first, end - timedelta(days=MAX_DAYS))
    days: dict[date, Counter[str]] = {}
    day = first
    while day <= end:
        days[day] = Counter()
        day += timedelta(days=1)
    for at in issued:
        bucket = days.get(at.astimezone(UTC).date())
        if bucket is not None:
            bucket["cards"] += 1
    for at, outcome in feedback:
        bucket = days.get(at.astimezone(UTC).date())
        if bucket is not None:
            bucket[outcome] += 1
    return [
        {
            "day": d.isoformat(),
            "cards": c["cards"],
            "accepted": c["accepted"],
            "overridden": c["overridden"],
        }
        for d, c in days.items()
    ]
