"""Rule tests: `<rule-id>.test.yaml` beside each rule, and the runner behind `rules test`.

One concern per module:

- `model`: the test file format (`schema: cds-rule-test/1`) and reading a file;
- `fixtures`: JSON files under `rules/_fixtures/` that cases name;
- `fhirdata`: the resources a case gives, validated as FHIR R4;
- `plan`: a test file checked against the loaded rule set, turned into runnable cases;
- `runner`: running a case as the service runs the call, and whole runs (`run_rule_tests`);
- `matching`: expected cards as subsets of the actual ones, and their diff;
- `report`: a case's result and a run's report.

Problems in test files are reported like rule problems, `path:line:col: field: message
[rule-id]`; the pytest plugin and the CLI share everything here. Linting (`lint_rules`,
`LintReport`) lives in `cds_service.rules.lint` and is re-exported here for older callers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cds_service.rules.testing.fixtures import FIXTURES_DIR
from cds_service.rules.testing.model import (
    Expectation,
    MockFhirServer,
    RuleTestCase,
    RuleTestFile,
    rule_test_files,
)
from cds_service.rules.testing.plan import PlannedCase, TestFilePlan, plan_tests
from cds_service.rules.testing.report import CaseResult, TestReport
from cds_service.rules.testing.runner import (
    MOCK_FHIR_BASE,
    known_scores,
    run_case,
    run_rule_tests,
)

if TYPE_CHECKING:
    from cds_service.rules.lint import LintReport, lint_rules

__all__ = [
    "FIXTURES_DIR",
    "MOCK_FHIR_BASE",
    "CaseResult",
    "Expectation",
    "LintReport",
    "MockFhirServer",
    "PlannedCase",
    "RuleTestCase",
    "RuleTestFile",
    "TestFilePlan",
    "TestReport",
    "known_scores",
    "lint_rules",
    "plan_tests",
    "rule_test_files",
    "run_case",
    "run_rule_tests",
]


def __getattr__(name: str) -> Any:
    # The lint package builds on the planner here, so importing it eagerly would be circular.
    if name in ("LintReport", "lint_rules"):
        from cds_service.rules import lint

        return getattr(lint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
