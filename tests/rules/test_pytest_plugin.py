"""The pytest plugin: one item per rule test case, one failing item per file that does not load."""

from __future__ import annotations

import pytest

from tests.rules.conftest import SAMPLE_RULE, add_sample_rule, make_rules_dir, minimal_rule

# Declared here rather than in tests/rules/conftest.py: pytest refuses `pytest_plugins` in a
# conftest below the rootdir once the run starts higher up (`pytest tests`).
pytest_plugins = ["pytester"]

PLUGIN = ("-p", "cds_service.rules.pytest_plugin", "-p", "no:cacheprovider")
TESTS = f"rules/order-select/{SAMPLE_RULE}.test.yaml"


@pytest.fixture
def rules(pytester: pytest.Pytester) -> pytest.Pytester:
    root = make_rules_dir(pytester.path)
    add_sample_rule(root)
    return pytester


def test_every_case_is_an_item(rules: pytest.Pytester) -> None:
    result = rules.runpytest(*PLUGIN, "-v", "rules")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            f"{TESTS}::fires for ibuprofen on warfarin PASSED*",
            f"{TESTS}::silent without an active anticoagulant PASSED*",
        ]
    )


def test_a_failing_case_fails_with_the_runner_message(rules: pytest.Pytester) -> None:
    path = rules.path / TESTS
    path.write_text(path.read_text().replace("indicator: warning\n", "indicator: info\n", 1))
    result = rules.runpytest(*PLUGIN, "rules", "-k", "fires")
    result.assert_outcomes(failed=1, deselected=5)
    result.stdout.fnmatch_lines(
        [
            f"{TESTS}:*: case 'fires for ibuprofen on warfarin' of rule {SAMPLE_RULE}",
            "--- expected cards",
            f"FAILED {TESTS}::fires for ibuprofen on warfarin*",
        ]
    )
    assert '\n  cards[0].indicator: expected "info", got "warning"\n' in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_files_that_do_not_load_fail_as_lint_items(rules: pytest.Pytester) -> None:
    broken = rules.path / "rules" / "order-select" / "broken-rule.yaml"
    broken.write_text(minimal_rule("broken-rule").replace("%medicationCount >", "%medCount >"))
    path = rules.path / TESTS
    path.write_text(path.read_text().replace("cases:", "cases:\n  - nme: typo", 1))
    result = rules.runpytest(*PLUGIN, "-v", "rules")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["rules/order-select/broken-rule.yaml::lint FAILED*", f"{TESTS}::lint FAILED*"]
    )
    out = result.stdout.str()
    assert (
        "\nrules/order-select/broken-rule.yaml:17:7: when.all[0].fhirpath: unknown variable "
        "%medCount (known here: %activeMedications, %age, %medicationCount, %now, %scores, %today) "
        "[broken-rule]\n"
    ) in out
    assert (
        f"\n{TESTS}:45:5: cases[0].nme: is not a known key (did you mean 'name'?) [{SAMPLE_RULE}]\n"
        in out
    )


def test_only_test_yaml_under_a_rules_directory_is_collected(rules: pytest.Pytester) -> None:
    root = rules.path / "rules"
    (root / "_fixtures").mkdir()
    (root / "_fixtures" / "bundle.json").write_text("{}")
    (root / "_fixtures" / "stray.test.yaml").write_text("not: [a test")
    (rules.path / "config").mkdir()
    (rules.path / "config" / "settings.yaml").write_text("key: [broken")
    (rules.path / "config" / "other.test.yaml").write_text("key: [broken")
    rules.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = rules.runpytest(*PLUGIN, "--collect-only", "-q")
    assert sorted(line for line in result.stdout.lines if "::" in line) == sorted(
        [
            "test_plain.py::test_plain",
            *(
                f"{TESTS}::{name}"
                for name in (
                    "fires for ibuprofen on warfarin",
                    "silent without an active anticoagulant",
                    "silent when the query found nothing",
                    "silent for acetaminophen on warfarin",
                    "fetches missing prefetch from the FHIR server",
                    "skipped when the medications cannot be obtained",
                )
            ),
        ]
    )
    rules.runpytest(*PLUGIN).assert_outcomes(passed=7)


def test_python_only_runs_are_unaffected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    (pytester.path / "data.yaml").write_text("a: 1")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
