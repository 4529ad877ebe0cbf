"""Fixture files under rules/_fixtures/: used by cases, and their problems located."""

from __future__ import annotations

import json
from pathlib import Path

from cds_service.rules.testing import run_rule_tests
from tests.rules.conftest import SAMPLE_RULE
from tests.rules.testing.support import (
    SUMMARY,
    WARFARIN_BUNDLE,
    issue_lines,
    one,
    write_tests,
)


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
