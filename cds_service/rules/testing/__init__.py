"""Rule tests: `<rule-id>.test.yaml` beside each rule, and the runner behind `rules test`.

One concern per module:

- `model`: the test file format (`schema: cds-rule-test/1`) and reading a file;
- `fixtures`: JSON files under `rules/_fixtures/` that cases name;
- `plan`: a test file checked against the loaded rule set, turned into runnable cases;
- `runner`: running a case as the service runs the call, and whole runs (`run_rule_tests`);
- `matching`: expected cards as subsets of the actual ones, and their diff;
- `report`: a case's result and a run's report;
- `lint`: `rules lint`, every problem without running tests.

Problems in test files are reported like rule problems, `path:line:col: field: message
[rule-id]`; the pytest plugin and the CLI share everything here.
"""

from __future__ import annotations

from cds_service.rules.testing.fixtures import FIXTURES_DIR
from cds_service.rules.testing.lint import LintReport, lint_rules
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
    score_source,
)

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
    "score_source",
]
