"""`cds-service rules explain ID --case FILE[:NAME]`: a test case's call, explained.

The request is the one `rules test` sends for the case (context, prefetch and fixture files, the
scores' keys, the case's `now` and `feedback:`), and the case's `fhir_server` answers what the
request lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.rules.cli import main
from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import SAMPLE_RULE, add_sample_rule, make_rules_dir, minimal_rule
from tests.rules.testing.support import (
    IBUPROFEN_CONTEXT,
    SUMMARY,
    WARFARIN_BUNDLE,
    write_tests,
)

CASES = [
    "fires for ibuprofen on warfarin",
    "silent without an active anticoagulant",
    "silent when the query found nothing",
    "silent for acetaminophen on warfarin",
    "fetches missing prefetch from the FHIR server",
    "skipped when the medications cannot be obtained",
]


def case_file(rules_dir: Path, stem: str = SAMPLE_RULE) -> Path:
    return rules_dir / "order-select" / f"{stem}.test.yaml"


def explain_case(rules_dir: Path, case: str, *args: str, rule: str = SAMPLE_RULE) -> int:
    return main(["rules", "explain", rule, "--rules", str(rules_dir), "--case", case, *args])


def test_a_named_case_is_explained_at_its_now(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = f"{case_file(rules_dir)}:fires for ibuprofen on warfarin"
    assert explain_case(rules_dir, case) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == "hook order-select, service medication-safety, now 2026-11-28T12:00:00Z"
    assert "  activeMedications: prefetch (Bundle, 1 entry)" in lines
    assert "    on-anticoagulant: true    %anticoagulant.exists()" in lines
    assert "status: fired" in lines
    card = json.loads(out[out.index("card:\n") + len("card:\n") :])
    assert card["summary"] == SUMMARY


def test_every_case_ends_as_rules_test_sees_it(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    statuses = {r.name: r.status for r in run_rule_tests(rules_dir).results}
    assert list(statuses) == CASES
    for name, status in statuses.items():
        assert explain_case(rules_dir, f"{case_file(rules_dir)}:{name}") == 0
        lines = capsys.readouterr().out.splitlines()
        assert any(line.split(" (")[0] == f"status: {status}" for line in lines), (name, lines)


def test_the_cases_fhir_server_answers_what_the_request_lacks(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert explain_case(rules_dir, f"{case_file(rules_dir)}:FHIR server") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  activeMedications: fetched (Bundle, 1 entry)" in lines
    assert "status: fired" in lines
    assert explain_case(rules_dir, f"{case_file(rules_dir)}:cannot be obtained") == 0
    lines = capsys.readouterr().out.splitlines()
    [line] = [line for line in lines if line.startswith("  activeMedications: ")]
    assert line.startswith("  activeMedications: unavailable")
    assert "explain does not fetch" not in line
    assert "status: skipped (data unavailable: activeMedications)" in lines


def test_a_name_may_be_a_unique_case_insensitive_part(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert explain_case(rules_dir, f"{case_file(rules_dir)}:ACETAMINOPHEN") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "    nsaid-selected: false    %nsaidOrder.exists()" in lines
    assert "status: silent" in lines


def test_an_ambiguous_or_unknown_name_lists_the_cases(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = case_file(rules_dir)
    assert explain_case(rules_dir, f"{path}:silent") == 2
    err = capsys.readouterr().err
    assert f"{path}: 'silent' matches 3 cases:" in err
    assert "  silent when the query found nothing" in err.splitlines()
    assert "fires for" not in err
    assert explain_case(rules_dir, f"{path}:no such case") == 2
    err = capsys.readouterr().err
    assert f"{path}: no case 'no such case'; its cases:" in err
    assert all(f"  {name}" in err.splitlines() for name in CASES)
    assert explain_case(rules_dir, str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path} has 6 cases: name one (--case FILE:NAME):" in err
    assert all(f"  {name}" in err.splitlines() for name in CASES)


def test_a_file_with_one_case_needs_no_name(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warfarin = json.dumps(WARFARIN_BUNDLE)
    path = write_tests(
        rules_dir,
        f"""\
  - name: the only one
    now: "2027-01-05T08:00:00Z"
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {warfarin}}}
""",
    )
    assert explain_case(rules_dir, str(path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("now 2027-01-05T08:00:00Z")
    assert "status: fired" in lines


def test_the_cases_feedback_and_fixture_files_are_used(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    rule.write_text(rule.read_text() + "suppress:\n  reasons: [short-course]\n  for: 30 days\n")
    (rules_dir / "_fixtures").mkdir()
    (rules_dir / "_fixtures" / "warfarin.json").write_text(json.dumps(WARFARIN_BUNDLE))
    path = write_tests(
        rules_dir,
        f"""\
  - name: snoozed
{IBUPROFEN_CONTEXT}
    prefetch_files: {{activeMedications: _fixtures/warfarin.json}}
    feedback:
      - {{outcome: overridden, reason: short-course, at: "2026-11-21T09:00:00Z"}}
    expect: {{status: suppressed}}
""",
    )
    assert explain_case(rules_dir, f"{path}:snoozed") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  activeMedications: prefetch (Bundle, 1 entry)" in lines
    assert "  overrides given: short-course at 2026-11-21T09:00:00Z" in lines
    assert any(line.startswith("status: suppressed (snoozed until 2026-12-21") for line in lines)


def test_injected_scores_are_shown(empty_rules: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rule = minimal_rule("scored").replace("let:\n", "scores: [cha2ds2-vasc]\nlet:\n")
    rule = rule.replace('"%medicationCount > 0"', '"%scores.cha2ds2_vasc.value >= 2"')
    (empty_rules / "order-select" / "scored.yaml").write_text(rule)
    path = write_tests(
        empty_rules,
        f"""\
  - name: high score
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: null}}
    scores: {{cha2ds2-vasc: {{value: 4}}}}
""",
        stem="scored",
    )
    assert explain_case(empty_rules, str(path), rule="scored") == 0
    lines = capsys.readouterr().out.splitlines()
    assert '  cha2ds2_vasc = {"value": 4}' in lines
    assert "  scoreConditions: prefetch (Bundle, 0 entries)" in lines  # answered from the case
    assert "status: fired" in lines


def test_the_rule_must_be_the_cases(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules_dir = make_rules_dir(tmp_path)
    add_sample_rule(rules_dir)
    (rules_dir / "order-select" / "other-rule.yaml").write_text(minimal_rule("other-rule"))
    path = case_file(rules_dir)
    code = explain_case(rules_dir, f"{path}:fires for ibuprofen", rule="other-rule")
    assert code == 2
    err = capsys.readouterr().err
    assert err == (
        f"{path}: case 'fires for ibuprofen on warfarin' tests rule {SAMPLE_RULE}, "
        f"not other-rule (explain {SAMPLE_RULE}, or give a case of other-rule)\n"
    )


def test_an_unknown_or_wrong_file_is_an_error(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = rules_dir / "order-select" / "nope.test.yaml"
    assert explain_case(rules_dir, f"{missing}:x") == 2
    err = capsys.readouterr().err
    assert f"{missing}: no such test file" in err
    assert f"{case_file(rules_dir)}" in err  # names the test files there are
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    assert explain_case(rules_dir, str(rule)) == 2
    assert "not a rule test file (*.test.yaml)" in capsys.readouterr().err


def test_a_broken_test_file_is_an_error_with_its_problems(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_tests(rules_dir, "  - name: no context\n    expect: {status: loud}\n")
    assert explain_case(rules_dir, str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path} has errors (see `cds-service rules lint`):" in err
    assert "expect.status" in err


def test_request_and_case_exclude_each_other(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        explain_case(rules_dir, str(case_file(rules_dir)), "--request", str(tmp_path / "r.json"))
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["rules", "explain", SAMPLE_RULE, "--rules", str(rules_dir)])
    assert exit_info.value.code == 2
    assert "one of the arguments --request --case is required" in capsys.readouterr().err


def test_without_rules_the_test_files_rules_directory_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_dir = make_rules_dir(tmp_path)
    (rules_dir / "order-select" / "other-rule.yaml").write_text(minimal_rule("other-rule"))
    path = write_tests(
        rules_dir,
        f"  - name: one\n{IBUPROFEN_CONTEXT}    prefetch: {{activeMedications: null}}\n",
        stem="other-rule",
    )
    assert main(["rules", "explain", "other-rule", "--case", str(path)]) == 0
    assert "status: silent" in capsys.readouterr().out.splitlines()
