"""Running cases: the call as the service makes it, compared with the expectation."""

from __future__ import annotations

import json
from pathlib import Path

from cds_service.rules.testing import known_scores, run_rule_tests
from cds_service.scores import score_names
from tests.rules.conftest import SAMPLE_RULE, minimal_rule
from tests.rules.testing.support import (
    IBUPROFEN_CONTEXT,
    SUMMARY,
    WARFARIN_BUNDLE,
    one,
    write_tests,
)


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


def test_known_scores_are_the_registered_calculators() -> None:
    assert known_scores() == score_names()


def snoozable(rules_dir: Path) -> None:
    """Give the sample rule a `suppress:` block: overridden `short-course` snoozes 30 days."""
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    rule.write_text(rule.read_text() + "suppress:\n  reasons: [short-course]\n  for: 30 days\n")


def test_a_cases_feedback_snoozes_the_rule(rules_dir: Path) -> None:
    snoozable(rules_dir)
    warfarin = json.dumps(WARFARIN_BUNDLE)
    write_tests(
        rules_dir,
        f"""\
  - name: overridden last week
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {warfarin}}}
    feedback:
      - {{outcome: overridden, reason: short-course, at: "2026-11-21T09:00:00Z"}}
    expect: {{status: suppressed, cards: [], conditions: {{nsaid-selected: true}}}}
  - name: overridden two months ago
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {warfarin}}}
    feedback:
      - {{outcome: overridden, reason: short-course, at: "2026-09-28T09:00:00Z"}}
    expect: {{cards: [{{summary: "{SUMMARY}"}}]}}
  - name: overridden for another reason
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {warfarin}}}
    feedback:
      - {{outcome: overridden, reason: benefit-outweighs-risk, at: "2026-11-21T09:00:00Z"}}
      - {{outcome: accepted, at: "2026-11-22T09:00:00Z"}}
    expect: {{status: fired, cards: [{{summary: "{SUMMARY}"}}]}}
  - name: snoozed, but expected to fire
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: {warfarin}}}
    feedback:
      - {{outcome: overridden, reason: short-course, at: "2026-11-21T09:00:00Z"}}
    expect: {{cards: [{{summary: "{SUMMARY}"}}]}}
""",
    )
    report = run_rule_tests(rules_dir)
    assert report.issues == []
    results = {r.name: r for r in report.results}
    assert [name for name, r in results.items() if not r.ok] == ["snoozed, but expected to fire"]
    snoozed = results["overridden last week"]
    assert snoozed.status == "suppressed"
    assert snoozed.reason == (
        "snoozed until 2026-12-21T09:00:00+00:00: overridden (short-course) "
        "at 2026-11-21T09:00:00+00:00"
    )
    assert results["snoozed, but expected to fire"].failures == [
        "cards: expected 1 card, got 0 (status suppressed: snoozed until "
        "2026-12-21T09:00:00+00:00: overridden (short-course) at 2026-11-21T09:00:00+00:00; "
        "conditions: nsaid-selected=true, on-anticoagulant=true)"
    ]
