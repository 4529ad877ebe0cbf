"""The rule test runner: file format, matching, mock FHIR server, filters, located problems."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cds_service.rules.cli import main
from cds_service.rules.testing import (
    CaseResult,
    TestReport,
    known_scores,
    run_rule_tests,
    subset_mismatches,
)
from cds_service.scores import score_names
from tests.rules.conftest import SAMPLE_RULE, minimal_rule

IBUPROFEN_CONTEXT = """\
    context:
      userId: Practitioner/dr-1
      patientId: p1
      selections: [MedicationRequest/mr-ibu]
      draftOrders:
        resourceType: Bundle
        type: collection
        entry:
          - resource:
              resourceType: MedicationRequest
              id: mr-ibu
              status: draft
              intent: order
              subject: {reference: Patient/p1}
              medicationCodeableConcept:
                text: Ibuprofen 200 MG Oral Tablet
                coding: [{system: "http://www.nlm.nih.gov/research/umls/rxnorm", code: "310965"}]
"""
WARFARIN_BUNDLE = {
    "resourceType": "Bundle",
    "type": "searchset",
    "entry": [
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": "mr-warf",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": {
                    "text": "Warfarin Sodium 5 MG Oral Tablet",
                    "coding": [
                        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "855332"}
                    ],
                },
            }
        }
    ],
}
SUMMARY = "Bleeding risk: Ibuprofen 200 MG Oral Tablet with Warfarin Sodium 5 MG Oral Tablet"


def write_tests(root: Path, cases: str, *, stem: str = SAMPLE_RULE, header: str = "") -> Path:
    """Replace the sample rule's test file with `cases` (YAML under `cases:`)."""
    path = root / "order-select" / f"{stem}.test.yaml"
    path.write_text(
        f'schema: cds-rule-test/1\nnow: "2026-11-28T12:00:00Z"\n{header}cases:\n{cases}'
    )
    return path


def one(report: TestReport) -> CaseResult:
    assert not report.errors, [str(i) for i in report.errors]
    assert len(report.results) == 1
    return report.results[0]


def line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_sample_test_file_passes(rules_dir: Path) -> None:
    report = run_rule_tests(rules_dir)
    assert report.issues == []
    assert [r.key for r in report.results if not r.ok] == []
    assert (report.passed, report.failed, report.ok) == (6, 0, True)
    assert f"{SAMPLE_RULE}/fires for ibuprofen on warfarin" in [r.key for r in report.results]


def test_a_failing_case_says_which_field_and_both_values(rules_dir: Path) -> None:
    path = write_tests(
        rules_dir,
        f"""\
  - name: wrong summary
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {json.dumps(WARFARIN_BUNDLE)}}}
    expect:
      cards: [{{summary: "Bleeding risk: naproxen", indicator: warning}}]
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert not result.ok
    assert result.failures == [
        f'cards[0].summary: expected "Bleeding risk: naproxen", got "{SUMMARY}"'
    ]
    message = result.message()
    assert message.startswith(f"{path}:4: case 'wrong summary' of rule {SAMPLE_RULE}")
    with_diff = result.message(diff=True)
    assert "--- expected cards" in with_diff
    assert '-    "summary": "Bleeding risk: naproxen"' in with_diff
    assert f'+    "summary": "{SUMMARY}"' in with_diff
    assert '"uuid"' not in with_diff  # random, and not expected


def test_nested_expectations_match_as_subsets(rules_dir: Path) -> None:
    write_tests(
        rules_dir,
        f"""\
  - name: nested
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {json.dumps(WARFARIN_BUNDLE)}}}
    expect:
      cards:
        - source: {{label: cds-service medication safety rules}}
          suggestions:
            - label: Remove the NSAID order
              actions: [{{type: delete, resourceId: MedicationRequest/mr-other}}]
          overrideReasons: [{{code: short-course}}]
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.failures == [
        'cards[0].suggestions[0].actions[0].resourceId: expected "MedicationRequest/mr-other", '
        'got "MedicationRequest/mr-ibu"',
        "cards[0].overrideReasons: expected 1 items, got 2: "
        + json.dumps(result.actual_cards[0]["overrideReasons"], sort_keys=True)[:199]
        + "…",
    ]


def test_no_expected_card_means_must_not_fire(rules_dir: Path) -> None:
    write_tests(
        rules_dir,
        f"""\
  - name: should stay quiet
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {json.dumps(WARFARIN_BUNDLE)}}}
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.failures == [f'cards: expected no card (must not fire), got 1: "{SUMMARY}"']


def test_a_missing_card_is_reported_with_the_conditions(rules_dir: Path) -> None:
    write_tests(
        rules_dir,
        f"""\
  - name: expects a card
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: null}}
    expect:
      cards: [{{indicator: warning}}]
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.failures == [
        "cards: expected 1 card, got 0 "
        "(status silent; conditions: nsaid-selected=true, on-anticoagulant=false)"
    ]


def test_condition_truths_are_compared(rules_dir: Path) -> None:
    write_tests(
        rules_dir,
        f"""\
  - name: conditions
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {json.dumps(WARFARIN_BUNDLE)}}}
    expect:
      cards: [{{indicator: warning}}]
      conditions: {{nsaid-selected: true, on-anticoagulant: false}}
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.failures == ["conditions.on-anticoagulant: expected false, got true"]


def test_the_mock_fhir_server_answers_and_records_queries(rules_dir: Path) -> None:
    write_tests(
        rules_dir,
        f"""\
  - name: fetches
{IBUPROFEN_CONTEXT}
    fhir_server:
      responses:
        "MedicationRequest?patient=p1&status=active": {json.dumps(WARFARIN_BUNDLE)}
    expect:
      cards: [{{indicator: warning}}]
      fhir_requests: ["MedicationRequest?patient=p1&status=completed"]
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.requested == ["MedicationRequest?patient=p1&status=active"]
    assert result.status == "fired"
    assert result.failures == [
        'fhir_requests: expected ["MedicationRequest?patient=p1&status=completed"], got '
        '["MedicationRequest?patient=p1&status=active"] (not requested: '
        '["MedicationRequest?patient=p1&status=completed"]; unexpected: '
        '["MedicationRequest?patient=p1&status=active"])'
    ]


def test_skipped_rules_fail_unless_the_status_is_expected(rules_dir: Path) -> None:
    write_tests(
        rules_dir,
        f"""\
  - name: nothing sent, no server
{IBUPROFEN_CONTEXT}
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.failures == [
        "status: the rule was skipped: data unavailable: activeMedications "
        "(expect `status: skipped` if that is intended)"
    ]


def test_expected_status_is_compared(rules_dir: Path) -> None:
    write_tests(
        rules_dir,
        f"""\
  - name: wrong status
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: null}}
    expect: {{status: fired}}
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.failures[0] == "status: expected fired, got silent"


def test_run_filters_by_rule_and_case_name(rules_dir: Path) -> None:
    report = run_rule_tests(rules_dir, pattern="silent")
    assert report.results and all("silent" in r.name for r in report.results)
    assert len(report.results) == 3
    report = run_rule_tests(rules_dir, pattern=f"^{SAMPLE_RULE}/fires")
    assert [r.name for r in report.results] == ["fires for ibuprofen on warfarin"]
    assert run_rule_tests(rules_dir, pattern="^other-rule/").results == []


def test_draft_rules_are_tested_like_active_ones(rules_dir: Path) -> None:
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    rule.write_text(rule.read_text().replace("status: active", "status: draft"))
    report = run_rule_tests(rules_dir)
    assert (report.passed, report.failed) == (6, 0)


def test_fixture_files_hold_big_contexts_and_bundles(rules_dir: Path) -> None:
    fixtures = rules_dir / "_fixtures"
    fixtures.mkdir()
    (fixtures / "warfarin.json").write_text(json.dumps(WARFARIN_BUNDLE))
    context = {
        "userId": "Practitioner/dr-1",
        "patientId": "p1",
        "selections": ["MedicationRequest/mr-ibu"],
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "mr-ibu",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/p1"},
                        "medicationCodeableConcept": {
                            "text": "Ibuprofen 200 MG Oral Tablet",
                            "coding": [
                                {
                                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                    "code": "310965",
                                }
                            ],
                        },
                    }
                }
            ],
        },
    }
    (fixtures / "ibuprofen-context.json").write_text(json.dumps(context))
    write_tests(
        rules_dir,
        f"""\
  - name: from files
    context_file: _fixtures/ibuprofen-context.json
    prefetch_files: {{activeMedications: _fixtures/warfarin.json}}
    expect:
      cards: [{{summary: "{SUMMARY}"}}]
""",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.ok, result.message()


def test_a_case_may_override_now_and_inject_scores(empty_rules: Path) -> None:
    rule = minimal_rule("recent-score")
    rule = rule.replace("let:\n", "scores: [cha2ds2-vasc]\nlet:\n")
    rule = rule.replace(
        '"%medicationCount > 0"',
        '"%scores.cha2ds2_vasc.value >= 2 and %now > @2027-01-01T00:00:00Z"',
    )
    (empty_rules / "order-select" / "recent-score.yaml").write_text(rule)
    write_tests(
        empty_rules,
        f"""\
  - name: high score, late enough
    now: "2027-06-01T00:00:00Z"
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: null}}
    scores: {{cha2ds2-vasc: {{value: 4}}}}
    expect:
      cards: [{{summary: "0 active medications"}}]
      conditions: {{has-medications: true}}
  - name: high score, too early
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: null}}
    scores: {{cha2ds2-vasc: {{value: 4}}}}
    expect:
      conditions: {{has-medications: false}}
""",
        stem="recent-score",
    )
    report = run_rule_tests(empty_rules)
    assert report.issues == []
    assert [(r.name, r.failures) for r in report.results] == [
        ("high score, late enough", []),
        ("high score, too early", []),
    ]


# --- problems in test files, with positions ---------------------------------------------------


def issue_lines(report: TestReport) -> list[str]:
    return [str(i) for i in report.issues]


def test_unknown_keys_are_reported_with_their_position(rules_dir: Path) -> None:
    path = write_tests(
        rules_dir,
        f"""\
  - name: typo
{IBUPROFEN_CONTEXT}
    expct: {{cards: []}}
""",
    )
    report = run_rule_tests(rules_dir)
    line = line_of(path, "expct:")
    assert issue_lines(report) == [
        f"{path}:{line}:5: cases[0].expct: is not a known key [{SAMPLE_RULE}]"
    ]
    assert report.results == []
    assert (report.passed, report.failed) == (0, 1)


def test_bad_yaml_and_duplicate_keys_are_reported(rules_dir: Path) -> None:
    path = write_tests(rules_dir, "  - name: [unclosed\n")
    [issue] = run_rule_tests(rules_dir).issues
    assert str(issue).startswith(f"{path}:5:1: YAML syntax error: ")
    assert "expected ',' or ']'" in issue.message
    assert "YAML syntax error" in issue.message
    path = write_tests(rules_dir, "  - name: a\n    name: b\n" + IBUPROFEN_CONTEXT)
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{path}:5:5: cases[0].name: duplicate key 'name' (first at line 4) [{SAMPLE_RULE}]"
    ]


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


def test_missing_and_invalid_fixture_files_are_reported(rules_dir: Path) -> None:
    (rules_dir / "_fixtures").mkdir()
    (rules_dir / "_fixtures" / "broken.json").write_text('{"resourceType": ')
    path = write_tests(
        rules_dir,
        """\
  - name: missing
    context_file: _fixtures/nope.json
  - name: broken
    context: {patientId: p1}
    prefetch_files: {activeMedications: _fixtures/broken.json}
  - name: both contexts
    context: {patientId: p1}
    context_file: _fixtures/nope.json
""",
    )
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{path}:5:5: cases[0].context_file: fixture file '_fixtures/nope.json' does not exist "
        f"[{SAMPLE_RULE}]",
        f"{path}:8:22: cases[1].prefetch_files.activeMedications: fixture file "
        f"'_fixtures/broken.json' is not valid JSON: Expecting value (line 1, column 18) "
        f"[{SAMPLE_RULE}]",
        f"{path}:9:5: cases[2]: give exactly one of `context` and `context_file` [{SAMPLE_RULE}]",
        f"{path}:11:5: cases[2].context_file: fixture file '_fixtures/nope.json' does not exist "
        f"[{SAMPLE_RULE}]",
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


def test_missing_required_keys_are_reported(rules_dir: Path) -> None:
    path = rules_dir / "order-select" / f"{SAMPLE_RULE}.test.yaml"
    path.write_text("schema: cds-rule-test/2\ncases: []\n")
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{path}:1:1: now: is required [{SAMPLE_RULE}]",
        f"{path}:1:1: schema: Input should be 'cds-rule-test/1' [{SAMPLE_RULE}]",
        f"{path}:2:1: cases: List should have at least 1 item after validation, not 0 "
        f"[{SAMPLE_RULE}]",
    ]


def test_rule_load_errors_fail_the_run_and_its_cases(rules_dir: Path) -> None:
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    rule.write_text(rule.read_text().replace("indicator: warning", "indicator: loud"))
    report = run_rule_tests(rules_dir)
    assert [i.field for i in report.errors] == ["card.indicator"]
    assert report.broken_files == [rule]
    assert report.passed == 0
    assert report.failed == 6 + 1
    assert report.results[0].failures == [
        f"rule {SAMPLE_RULE} did not load: run `cds-service rules lint` and fix it"
    ]


def test_subset_matching_is_type_strict() -> None:
    assert subset_mismatches({"a": 1}, {"a": 1.0, "b": 2}, "x") == []
    assert subset_mismatches({"a": True}, {"a": 1}, "x") == ["x.a: expected true, got 1"]
    assert subset_mismatches({"a": "1"}, {"a": 1}, "x") == ['x.a: expected "1", got 1']
    assert subset_mismatches([{"a": 1}], [{"a": 1, "b": 2}], "x") == []
    assert subset_mismatches({"a": {"b": 1}}, {}, "x") == [
        'x.a: expected {"b": 1}, got nothing (absent)'
    ]


def test_known_scores_are_the_registered_calculators() -> None:
    assert known_scores() == score_names()


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_test_prints_one_line_per_case_and_the_totals(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "test", str(rules_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ok   {SAMPLE_RULE}/fires for ibuprofen on warfarin"
    assert len(out) == 7
    assert out[-1] == "6 passed, 0 failed"


def test_cli_test_fails_with_messages_and_diffs(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = rules_dir / "order-select" / f"{SAMPLE_RULE}.test.yaml"
    path.write_text(path.read_text().replace("on-anticoagulant: false}", "on-anticoagulant: true}"))
    path.write_text(path.read_text().replace("indicator: warning\n", "indicator: critical\n", 1))
    assert main(["rules", "test", str(rules_dir), "--diff"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {SAMPLE_RULE}/fires for ibuprofen on warfarin\n" in out
    assert 'cards[0].indicator: expected "critical", got "warning"' in out
    assert '-    "indicator": "critical",' in out
    assert "conditions.on-anticoagulant: expected true, got false" in out
    assert out.splitlines()[-1] == "4 passed, 2 failed"


def test_cli_test_counts_broken_files_and_rejects_bad_patterns(
    rules_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_tests(rules_dir, "  - name: typo\n    contxt: {}\n")
    assert main(["rules", "test", str(rules_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith("FAIL ") and out[-2].endswith("does not load (see the errors above)")
    assert out[-1] == "0 passed, 1 failed"
    assert main(["rules", "test", str(rules_dir), "--run", "("]) == 2
    assert "--run: invalid regular expression" in capsys.readouterr().err
