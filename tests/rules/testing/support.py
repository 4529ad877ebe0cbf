"""What the rule-test tests share: a rules directory's test file, and the sample's data."""

from __future__ import annotations

from pathlib import Path

from cds_service.rules.testing import CaseResult, TestReport
from tests.rules.conftest import SAMPLE_RULE

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


def issue_lines(report: TestReport) -> list[str]:
    return [str(i) for i in report.issues]
