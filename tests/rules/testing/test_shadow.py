"""`expect.status: shadow`: a draft rule that fires (its card is never returned to EHRs)."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.lint import lint_rules
from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import SAMPLE_RULE
from tests.rules.testing.support import IBUPROFEN_CONTEXT, SUMMARY, one, write_tests

ON_WARFARIN = """\
    prefetch:
      activeMedications:
        resourceType: Bundle
        type: searchset
        entry:
          - resource:
              resourceType: MedicationRequest
              id: mr-warf
              status: active
              intent: order
              subject: {reference: Patient/p1}
              medicationCodeableConcept:
                text: Warfarin Sodium 5 MG Oral Tablet
                coding: [{system: "http://www.nlm.nih.gov/research/umls/rxnorm", code: "855332"}]
"""


def _draft(rules_dir: Path) -> None:
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    rule.write_text(rule.read_text().replace("status: active", "status: draft", 1))


def _case(expect: str) -> str:
    return f"  - name: shadow case\n{IBUPROFEN_CONTEXT}{ON_WARFARIN}    expect: {expect}\n"


def test_a_draft_that_fires_passes_status_shadow_with_or_without_its_card(
    rules_dir: Path,
) -> None:
    _draft(rules_dir)
    write_tests(rules_dir, _case("{status: shadow}"))
    result = one(run_rule_tests(rules_dir))
    assert (result.ok, result.status, result.failures) == (True, "shadow", [])
    write_tests(rules_dir, _case(f'{{status: shadow, cards: [{{summary: "{SUMMARY}"}}]}}'))
    assert one(run_rule_tests(rules_dir)).ok
    # The card it would show is still compared when listed.
    write_tests(rules_dir, _case('{status: shadow, cards: [{summary: "another"}]}'))
    result = one(run_rule_tests(rules_dir))
    assert not result.ok and result.failures[0].startswith("cards[0].summary:")


def test_status_fired_for_a_draft_fails_suggesting_shadow(rules_dir: Path) -> None:
    _draft(rules_dir)
    write_tests(rules_dir, _case(f'{{status: fired, cards: [{{summary: "{SUMMARY}"}}]}}'))
    result = one(run_rule_tests(rules_dir))
    assert result.failures == [
        f"status: expected fired, got shadow: rule {SAMPLE_RULE} is a draft (status: draft), "
        "so its card is never returned: expect `status: shadow`"
    ]


def test_status_shadow_for_an_active_rule_fails(rules_dir: Path) -> None:
    write_tests(rules_dir, _case("{status: shadow}"))
    result = one(run_rule_tests(rules_dir))
    assert result.failures[0] == (
        "status: expected shadow, got fired (only a `status: draft` rule's outcome is shadow)"
    )


def test_a_draft_that_stays_silent_fails_status_shadow(rules_dir: Path) -> None:
    _draft(rules_dir)
    write_tests(
        rules_dir,
        f"  - name: silent\n{IBUPROFEN_CONTEXT}    prefetch: {{activeMedications: null}}\n"
        "    expect: {status: shadow}\n",
    )
    result = one(run_rule_tests(rules_dir))
    assert result.failures == ["status: expected shadow, got silent"]


def test_a_shadow_case_shows_the_rule_firing_for_lint(rules_dir: Path) -> None:
    _draft(rules_dir)
    cases = _case("{status: shadow}") + (
        f"  - name: silent\n{IBUPROFEN_CONTEXT}    prefetch: {{activeMedications: null}}\n"
    )
    write_tests(rules_dir, cases)
    report = lint_rules(rules_dir)
    assert not report.errors, [str(i) for i in report.errors]
    assert not [i for i in report.issues if i.validator == "missing-firing-case"]
