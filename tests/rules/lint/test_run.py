"""`cds-service rules lint`: every problem of every file, located, and the exit status."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.rules.cli import main
from tests.rules.conftest import SAMPLE_RULE, minimal_rule

# file stem → (text replaced, replacement, text where the problem is reported, message)
BROKEN: dict[str, tuple[str, str, str, str]] = {
    "typo-key": (
        "  summary:",
        "  sumary:",
        "sumary:",
        "card.sumary: is not a known key (did you mean 'summary'?) [typo-key]",
    ),
    "duplicate-key": (
        "version: 1\n",
        "version: 1\ntitle: Twice\n",
        "title: A rule",
        "title: duplicate key 'title' (first at line 4)",
    ),
    "bad-fhirpath": (
        '"%medicationCount > 0"',
        '"%medicationCount > "',
        "fhirpath:",
        "when.all[0].fhirpath: FHIRPath syntax error:",
    ),
    "unknown-variable": (
        '"%medicationCount > 0"',
        '"%medicationCounts > 0"',
        "fhirpath:",
        "when.all[0].fhirpath: unknown variable %medicationCounts (known here: "
        "%activeMedications, %age, %medicationCount, %now, %scores, %today) [unknown-variable]",
    ),
    "wall-clock": (
        '"%medicationCount > 0"',
        '"%medicationCount > 0 and today() > @2020-01-01"',
        "fhirpath:",
        "when.all[0].fhirpath: today() reads the wall clock; use %now instead [wall-clock]",
    ),
    "unknown-value-set": (
        '"%medicationCount > 0"',
        '"%activeMedications.entry.resource.medication.ofType(CodeableConcept)'
        ".memberOf('statins').exists()\"",
        "fhirpath:",
        "when.all[0].fhirpath: unknown value set 'statins' (known: oral-anticoagulants, "
        "oral-nsaids); add it under rules/_valuesets/ [unknown-value-set]",
    ),
    "unknown-score": (
        "let:\n",
        "scores: [frailty-index]\nlet:\n",
        "frailty-index",
        "scores[0]: unknown score 'frailty-index' (known: ",
    ),
    "unbound-name": (
        '"{{medicationCount}} active medications"',
        '"{{medicationTotal}} active medications"',
        "summary:",
        "card.summary: {{medicationTotal}} is not a binding under `let:` [unbound-name]",
    ),
    "wrong-file-name": (
        "id: wrong-file-name",
        "id: another-name",
        "id:",
        "id: must equal the file name 'wrong-file-name' [another-name]",
    ),
}


def broken_rules(root: Path) -> dict[str, tuple[Path, int, int, str]]:
    """Write every broken rule; returns stem → (path, line, column, message)."""
    expected = {}
    for stem, (old, new, reported, message) in BROKEN.items():
        text = minimal_rule(stem)
        assert old in text, stem
        text = text.replace(old, new, 1)
        path = root / "order-select" / f"{stem}.yaml"
        path.write_text(text)
        lines = text.splitlines()
        line = next(n for n, t in enumerate(lines, 1) if reported in t)
        column = lines[line - 1].index(reported) + 1
        expected[stem] = (path, line, column, message)
    return expected


def test_lint_reports_every_problem_with_its_location(
    empty_rules: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = broken_rules(empty_rules)
    assert main(["rules", "lint", str(empty_rules)]) == 1
    out = capsys.readouterr().out.splitlines()
    for stem, (path, line, column, message) in expected.items():
        where = f"{path}:{line}:{column}: "
        assert any(o.startswith(where) and message in o for o in out), (stem, where, out)
    errors = [o for o in out[:-1] if not o.endswith("(warning)")]
    assert out[-1] == f"{len(BROKEN)} rules, {len(errors)} errors, 0 warnings"


def test_lint_is_clean_and_exits_0_for_good_rules(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "lint", str(rules_dir)]) == 0
    assert capsys.readouterr().out == "1 rules, 0 errors, 0 warnings\n"


def test_warnings_do_not_fail_lint(empty_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = empty_rules / "order-select" / "untested.yaml"
    path.write_text(minimal_rule("untested"))
    assert main(["rules", "lint", str(empty_rules)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:1:1: no test file 'untested.test.yaml' beside this rule [untested] "
        "(rule-without-tests) (warning)",
        "1 rules, 0 errors, 1 warnings",
    ]


def test_lint_checks_test_files_too(rules_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = rules_dir / "order-select" / f"{SAMPLE_RULE}.test.yaml"
    tests.write_text(tests.read_text().replace("    expect:\n", "    expected:\n", 1))
    assert main(["rules", "lint", str(rules_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2
    assert out[0].startswith(f"{tests}:")
    assert out[0].endswith(f": cases[0].expected: is not a known key [{SAMPLE_RULE}]")
    assert out[1] == "1 rules, 1 errors, 0 warnings"


def test_lint_of_a_missing_directory_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "lint", str(tmp_path / "nowhere")]) == 1
    out = capsys.readouterr().out
    assert "the rules directory does not exist" in out
    assert out.endswith("0 rules, 1 errors, 0 warnings\n")
