"""rule-outside-hook-directory."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.lint import lint_rules
from cds_service.rules.ruleset import load_ruleset
from tests.rules.conftest import SAMPLE_RULE, add_sample_rule


def test_a_rule_outside_its_hook_folder_loads_and_lint_warns(empty_rules: Path) -> None:
    rule = add_sample_rule(empty_rules)
    moved = empty_rules / "misc" / rule.name
    moved.parent.mkdir()
    rule.rename(moved)
    rule.with_name(f"{SAMPLE_RULE}.test.yaml").rename(moved.with_name(f"{SAMPLE_RULE}.test.yaml"))
    assert load_ruleset(empty_rules).issues == []  # serving does not care where a rule lives
    line = next(n for n, t in enumerate(moved.read_text().splitlines(), 1) if t.startswith("hook:"))
    assert [str(i) for i in lint_rules(empty_rules).issues] == [
        f"{moved}:{line}:1: hook: the rule lives in 'misc/' but its hook is 'order-select': "
        f"keep rules in rules/<hook>/ [{SAMPLE_RULE}] (rule-outside-hook-directory) (warning)"
    ]
