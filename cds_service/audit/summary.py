"""Per rule, over a time window: cards issued, shadow and suppressed outcomes, failures, feedback.

`cds-service audit --by rule` prints this. The counts come from three tables of the one database,
each filtered on its own time (`cds_issued_cards.issued_at`, `cds_audit.at`,
`cds_feedback.received_at`) and on the tenant and patient when given:

- cards issued: `cds_issued_cards` (a built-in service's cards under the service's id);
- `shadow`, `suppressed`, `skipped`, `error`, `timeout`: the `rule_outcomes` of `cds_audit` rows;
- feedback by outcome and override reason code: `cds_feedback` (through the feedback store).
  Feedback stored before rows carried their rule is counted under rule `-`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, case, func, select

from cds_service.database import utc
from cds_service.feedback.store import FeedbackCount

__all__ = [
    "AUDITED_STATUSES",
    "KeyCount",
    "KeyStatus",
    "RuleSummary",
    "Window",
    "call_counts",
    "issued_times",
    "summarize",
]

#: The rule outcomes the audit counts besides cards issued (`fired` is counted as cards issued).
AUDITED_STATUSES = ("shadow", "suppressed", "skipped", "error", "timeout")

Key = tuple[str, str, str]  # service, rule id, rule version
KeyCount = tuple[Key, int]  # cards issued
KeyStatus = tuple[Key, str]  # one audited outcome


@dataclass(frozen=True, slots=True)
class Window:
    """Which rows count: `since <= time < until` (either optional), one tenant, one patient."""

    since: datetime | None = None
    until: datetime | None = None
    tenant: str | None = None
    patient: str | None = None

    def where(self, stmt: Select[Any], table: Table, time: str) -> Select[Any]:
        """`stmt` restricted to the window, on `table`'s time column `time`."""
        column = table.c[time]
        if self.since is not None:
            stmt = stmt.where(column >= utc(self.since))
        if self.until is not None:
            stmt = stmt.where(column < utc(self.until))
        if self.tenant is not None:
            stmt = stmt.where(table.c.tenant == self.tenant)
        if self.patient is not None:
            stmt = stmt.where(table.c.patient_id == self.patient)
        return stmt


@dataclass(slots=True)
class RuleSummary:
    """One rule (version) of one service over the window."""

    service: str
    rule: str
    version: str
    cards: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # by status (AUDITED_STATUSES)
    feedback: Counter[str] = field(default_factory=Counter)  # accepted, overridden
    override_reasons: Counter[str] = field(default_factory=Counter)  # code (or `none`)

    def to_json(self) -> dict[str, Any]:
        """The JSON object printed for the rule (every audited status, even when 0)."""
        return {
            "service": self.service,
            "rule": self.rule,
            "version": self.version,
            "cards": self.cards,
            **{status: self.outcomes[status] for status in AUDITED_STATUSES},
            "accepted": self.feedback["accepted"],
            "overridden": self.feedback["overridden"],
            "override_reasons": dict(sorted(self.override_reasons.items())),
        }


def issued_counts(table: Table, window: Window) -> Select[Any]:
    """Cards issued, by service, rule id and version."""
    t = table
    stmt = select(t.c.service, t.c.rule_id, t.c.rule_version, func.count().label("n"))
    stmt = window.where(stmt, t, "issued_at")
    return stmt.group_by(t.c.service, t.c.rule_id, t.c.rule_version)


def call_counts(table: Table, window: Window) -> Select[Any]:
    """Hook calls answered 200, and those with at least one card, by service and hook."""
    t = table
    carded = func.sum(case((t.c.cards > 0, 1), else_=0)).label("carded")
    stmt = select(t.c.service, t.c.hook, func.count().label("n"), carded).where(
        t.c.kind == "hook", t.c.outcome == 200
    )
    return window.where(stmt, t, "at").group_by(t.c.service, t.c.hook)


def issued_times(table: Table, window: Window, rule_id: str) -> Select[Any]:
    """When each card of one rule was issued (for its timeline)."""
    t = table
    stmt = select(t.c.issued_at).where(t.c.rule_id == rule_id)
    return window.where(stmt, t, "issued_at").order_by(t.c.issued_at).limit(200_000)


def audited_outcomes(table: Table, window: Window) -> Select[Any]:
    """The hook calls' rule outcomes (service, JSON), for `summarize` to count."""
    t = table
    stmt = select(t.c.service, t.c.rule_outcomes).where(
        t.c.kind == "hook", t.c.rule_outcomes.is_not(None)
    )
    return window.where(stmt, t, "at")


def summarize(
    issued: Iterable[KeyCount],
    outcomes: Iterable[KeyStatus],
    feedback: Iterable[FeedbackCount],
) -> list[RuleSummary]:
    """One summary per (service, rule, version) seen in any of the three, sorted."""
    rules: dict[Key, RuleSummary] = {}

    def of(key: Key) -> RuleSummary:
        if key not in rules:
            rules[key] = RuleSummary(*key)
        return rules[key]

    for key, count in issued:
        of(key).cards += count
    for key, status in outcomes:
        if status in AUDITED_STATUSES:
            of(key).outcomes[status] += 1
    for item in feedback:
        summary = of((item.service, item.rule_id or "-", item.rule_version or "-"))
        summary.feedback[item.outcome] += item.count
        if item.outcome == "overridden":
            summary.override_reasons[item.reason or "none"] += item.count
    return [rules[key] for key in sorted(rules)]
