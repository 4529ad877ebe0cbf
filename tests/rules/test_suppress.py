"""A rule's `suppress:` block, checked when the rule loads: each reason is one of the card's
override reason codes, `for` is a positive number of days, weeks, months or years."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.rules.ruleset import load_ruleset
from cds_service.services.suppression import SnoozePolicy
from tests.rules.conftest import minimal_rule

REASONS = """\
  overrideReasons:
    - {system: "urn:cds-service:override-reason", code: patient-declined, display: Patient declined}
    - {system: "urn:example:other", code: given-elsewhere, display: Given elsewhere}
"""


def load(root: Path, suppress: str, *, reasons: str = REASONS) -> tuple[object, list[str]]:
    """Load the minimal rule with `suppress` appended (and the card's override reasons): its
    policy and every problem as `line:col: field: message`."""
    text = minimal_rule("probe") + reasons + suppress
    (root / "order-select" / "probe.yaml").write_text(text)
    ruleset = load_ruleset(root)
    rule = ruleset.rules.get("probe")
    issues = [f"{i.line}:{i.col}: {i.field}: {i.message}" for i in ruleset.issues]
    return (rule.suppress if rule is not None else None), issues


@pytest.mark.parametrize(
    ("duration", "amount", "unit"),
    [
        ("6 months", 6, "month"),
        ("1 year", 1, "year"),
        ("30 days", 30, "day"),
        ("2 weeks", 2, "week"),
    ],
)
def test_a_valid_block_becomes_the_rules_policy(
    empty_rules: Path, duration: str, amount: int, unit: str
) -> None:
    block = f"suppress:\n  reasons: [patient-declined, given-elsewhere]\n  for: {duration}\n"
    policy, issues = load(empty_rules, block)
    assert issues == []
    assert policy == SnoozePolicy(
        frozenset(
            {
                ("urn:cds-service:override-reason", "patient-declined"),
                ("urn:example:other", "given-elsewhere"),
            }
        ),
        amount,
        unit,
    )


def test_a_rule_without_the_block_has_no_policy(empty_rules: Path) -> None:
    assert load(empty_rules, "") == (None, [])


def test_reasons_must_be_the_cards_override_reason_codes(empty_rules: Path) -> None:
    block = "suppress:\n  reasons: [patient-declined, declined]\n  for: 6 months\n"
    policy, issues = load(empty_rules, block)
    assert policy is None  # the rule does not load
    assert issues == [
        "26:31: suppress.reasons[1]: 'declined' is not a code of the card's overrideReasons "
        "(its codes: given-elsewhere, patient-declined)"
    ]
    _, issues = load(empty_rules, block, reasons="")
    assert issues[0].endswith("(its codes: none: add card.overrideReasons)")


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ("suppress:\n  reasons: [patient-declined]\n  for: 0 days\n", "suppress.for"),
        ("suppress:\n  reasons: [patient-declined]\n  for: 6 fortnights\n", "suppress.for"),
        ("suppress:\n  reasons: [patient-declined]\n  for: -1 year\n", "suppress.for"),
        ("suppress:\n  reasons: [patient-declined]\n  for: 6\n", "suppress.for"),
        ("suppress:\n  reasons: [patient-declined]\n", "suppress.for"),
        ("suppress:\n  reasons: []\n  for: 6 months\n", "suppress.reasons"),
        ("suppress:\n  reason: [patient-declined]\n  for: 6 months\n", "suppress.reason"),
    ],
)
def test_malformed_blocks_are_load_errors(empty_rules: Path, block: str, field: str) -> None:
    policy, issues = load(empty_rules, block)
    assert policy is None
    assert field in [issue.split(": ")[1] for issue in issues], issues
