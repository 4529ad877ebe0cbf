"""Planning: a test file checked against the rules it tests, problems located."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import SAMPLE_RULE
from tests.rules.testing.support import IBUPROFEN_CONTEXT, issue_lines, write_tests


def test_cases_naming_unknown_rules_and_conditions_are_reported(rules_dir: Path) -> None:
    path = write_tests(
        rules_dir,
        f"""\
  - name: other rule
    rule: no-such-rule
{IBUPROFEN_CONTEXT}
  - name: unknown condition
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: null, activeMeds: null}}
    scores: {{has-bled: {{value: 3}}}}
    expect:
      conditions: {{nsaid-selcted: true}}
  - name: unknown condition
{IBUPROFEN_CONTEXT}
    prefetch_files: {{activeMedications: ../outside.json}}
""",
    )
    lines = path.read_text().splitlines()

    def at(needle: str, occurrence: int = 1) -> str:
        found = [n for n, line in enumerate(lines, 1) if needle in line][occurrence - 1]
        return f"{path}:{found}:{lines[found - 1].index(needle.strip()) + 1}:"

    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{at('rule: no-such')} cases[0].rule: unknown rule 'no-such-rule' [{SAMPLE_RULE}]",
        f"{at('activeMeds:')} cases[1].prefetch.activeMeds: 'activeMeds' is not a prefetch key "
        f"of rule {SAMPLE_RULE} (its keys: activeMedications) [{SAMPLE_RULE}]",
        f"{at('has-bled')} cases[1].scores.has-bled: rule {SAMPLE_RULE} does not declare score "
        f"'has-bled' (declared: none) [{SAMPLE_RULE}]",
        f"{at('nsaid-selcted')} cases[1].expect.conditions.nsaid-selcted: rule {SAMPLE_RULE} has "
        f"no condition 'nsaid-selcted' (its conditions: nsaid-selected, on-anticoagulant) "
        f"[{SAMPLE_RULE}]",
        f"{at('name: unknown condition', 2)} cases[2].name: case name 'unknown condition' is "
        f"used twice [{SAMPLE_RULE}]",
        f"{at('activeMedications: ../outside')} cases[2].prefetch_files.activeMedications: "
        f"'../outside.json' is not under _fixtures/ (paths are relative to the rules directory, "
        f"e.g. _fixtures/bundle.json) [{SAMPLE_RULE}]",
    ]


def test_a_test_file_needs_its_rule_beside_it(rules_dir: Path) -> None:
    path = write_tests(rules_dir, "  - name: x\n" + IBUPROFEN_CONTEXT, stem="no-such-rule")
    report = run_rule_tests(rules_dir)
    assert issue_lines(report) == [
        f"{path}:1:1: no rule file 'no-such-rule.yaml' beside this test file "
        "(a test file is named after its rule: <rule-id>.test.yaml) [no-such-rule]"
    ]
    assert report.failed == 1
    assert not report.ok


def test_feedback_reasons_are_the_rules_override_reason_codes(rules_dir: Path) -> None:
    path = write_tests(
        rules_dir,
        f"""\
  - name: unknown reason
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: null}}
    feedback:
      - {{outcome: overridden, reason: patient-declined, at: "2026-11-21T09:00:00Z"}}
      - {{outcome: accepted, reason: short-course, at: "2026-11-21T09:00:00Z"}}
      - {{outcome: overridden, at: "2026-11-21T09:00:00Z"}}
""",
    )
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "patient-" in text)
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{path}:{line}:31: cases[0].feedback[0].reason: 'patient-declined' is not a code of "
        f"rule {SAMPLE_RULE}'s card.overrideReasons (its codes: benefit-outweighs-risk, "
        f"short-course) [{SAMPLE_RULE}]",
        f"{path}:{line + 1}:29: cases[0].feedback[1].reason: an accepted card has no override "
        f"reason [{SAMPLE_RULE}]",
    ]
