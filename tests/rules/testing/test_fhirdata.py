"""Test data is FHIR: the resources a case gives are validated as FHIR R4, problems located."""

from __future__ import annotations

import json
from pathlib import Path

from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.testing import plan_tests, run_rule_tests
from cds_service.rules.testing.fhirdata import FhirDataChecker
from tests.rules.conftest import SAMPLE_RULE
from tests.rules.testing.support import IBUPROFEN_CONTEXT, WARFARIN_BUNDLE, issue_lines, write_tests

SHIPPED = Path(__file__).resolve().parents[3] / "rules"


def _at(path: Path, needle: str, occurrence: int = 1) -> str:
    """`path:line:col:` of the `occurrence`-th line holding `needle`, at its first character."""
    lines = path.read_text().splitlines()
    line = [n for n, text in enumerate(lines, 1) if needle in text][occurrence - 1]
    return f"{path}:{line}:{lines[line - 1].index(needle) + 1}:"


def test_invalid_resources_are_reported_at_the_offending_value(rules_dir: Path) -> None:
    path = write_tests(
        rules_dir,
        f"""\
  - name: invalid data
{IBUPROFEN_CONTEXT}
    prefetch:
      activeMedications:
        resourceType: Bundle
        type: searchset
        entry:
          - resource:
              resourceType: Observation
              id: inr
              status: final
              code: {{text: INR}}
              valueQuantiy: {{value: 2.5}}
          - resource:
              resourceType: MedicationRequest
              id: mr-warf
              status: 3
              intent: order
              subject: {{reference: Patient/p1}}
              medicationCodeableConcept: {{text: Warfarin Sodium 5 MG Oral Tablet}}
          - resource: {{id: no-type, status: active}}
    fhir_server:
      responses:
        "Patient/p1": {{resourceType: Patient, id: p1, birthDate: \\"1959-02-09\\"}}
""",
    )
    report = run_rule_tests(rules_dir)
    assert issue_lines(report) == [
        f"{_at(path, 'valueQuantiy:')} cases[0].prefetch.activeMedications.entry[0].resource."
        "valueQuantiy: Observation.valueQuantiy: not an element of Observation (did you mean "
        f"'valueQuantity'?) [{SAMPLE_RULE}]",
        f"{_at(path, 'status: 3')} cases[0].prefetch.activeMedications.entry[1].resource.status: "
        "MedicationRequest.status: 3 is not a FHIR code (a string without leading, trailing or "
        f"repeated whitespace) [{SAMPLE_RULE}]",
        f"{_at(path, 'resource: {id: no-type')} cases[0].prefetch.activeMedications.entry[2]."
        f"resource: not a FHIR resource: it has no resourceType [{SAMPLE_RULE}]",
        f"{_at(path, 'birthDate:')} cases[0].fhir_server.responses.Patient/p1.birthDate: "
        "Patient.birthDate: '\\\"1959-02-09\\\"' is not a FHIR date (YYYY, YYYY-MM or "
        f"YYYY-MM-DD) [{SAMPLE_RULE}]",
    ]
    assert not report.results  # a test file with errors runs no case
    text = "\n".join(issue_lines(report))
    assert "pydantic" not in text and "constrained" not in text and "http" not in text


def test_a_resource_several_cases_share_is_one_problem(rules_dir: Path) -> None:
    path = write_tests(
        rules_dir,
        f"""\
  - name: first
{IBUPROFEN_CONTEXT}
    prefetch:
      activeMedications: &meds
        resourceType: Bundle
        type: searchset
        entry:
          - resource:
              resourceType: MedicationRequest
              id: m
              status: active
              intent: order
              subjet: {{reference: Patient/p1}}
              medicationCodeableConcept: {{text: Warfarin Sodium 5 MG Oral Tablet}}
  - name: second
{IBUPROFEN_CONTEXT}
    prefetch: {{activeMedications: *meds}}
""",
    )
    entry = "cases[0].prefetch.activeMedications.entry[0].resource"
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{_at(path, 'resource:', 2)} {entry}.subject: MedicationRequest.subject: required,"
        f" but missing [{SAMPLE_RULE}]",
        f"{_at(path, 'subjet:')} {entry}.subjet: MedicationRequest.subjet: not an element of "
        f"MedicationRequest (did you mean 'subject'?) [{SAMPLE_RULE}]",
    ]


def test_fixture_files_and_context_resources_are_validated(rules_dir: Path) -> None:
    fixtures = rules_dir / "_fixtures"
    fixtures.mkdir()
    bundle = json.loads(json.dumps(WARFARIN_BUNDLE))
    bundle["entry"][0]["resource"]["authoredOn"] = "2026-13-01"
    (fixtures / "warfarin.json").write_text(json.dumps(bundle))
    path = write_tests(
        rules_dir,
        f"""\
  - name: from a file
{IBUPROFEN_CONTEXT.replace("status: draft", "status: [draft]")}
    prefetch_files: {{activeMedications: _fixtures/warfarin.json}}
""",
    )
    assert issue_lines(run_rule_tests(rules_dir)) == [
        f"{_at(path, 'status: [draft]')} cases[0].context.draftOrders.entry[0].resource.status: "
        "MedicationRequest.status: a list is not a FHIR code (a string without leading, "
        f"trailing or repeated whitespace) [{SAMPLE_RULE}]",
        f"{_at(path, 'activeMedications: _fix')} cases[0].prefetch_files.activeMedications: in "
        "'_fixtures/warfarin.json' at entry[0].resource.authoredOn: MedicationRequest.authoredOn:"
        " '2026-13-01' is not a FHIR dateTime (YYYY, YYYY-MM, YYYY-MM-DD, or YYYY-MM-DDThh:mm:ss"
        f" with a time zone) [{SAMPLE_RULE}]",
    ]


def test_messages_name_the_element_and_what_is_wrong() -> None:
    checker = FhirDataChecker()
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    problems = checker.problems(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"resource": {**observation, "code": [{"text": "x"}], "category": {"text": "a"}}},
                {"resource": {"resourceType": "Foo"}},
                {"resource": {**observation, "valueQuantity": {"value": "high"}}},
            ],
        }
    )
    assert [(p.path, p.message) for p in problems] == [
        (
            ("entry", 0, "resource", "category"),
            "Observation.category: must be a list (the element repeats), not an object",
        ),
        (
            ("entry", 0, "resource", "code"),
            "Observation.code: must be a FHIR CodeableConcept (an object), not a list",
        ),
        (("entry", 1, "resource", "resourceType"), "'Foo' is not a FHIR R4 resource type"),
        (
            ("entry", 2, "resource", "valueQuantity", "value"),
            "Observation.valueQuantity.value: 'high' is not a FHIR decimal (a number)",
        ),
    ]
    order = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
    }
    assert [p.message for p in checker.problems(order)] == [
        "MedicationRequest: one of medicationCodeableConcept or medicationReference is required"
    ]
    assert checker.problems({**observation}) == ()
    assert checker.problems([]) != ()


def test_the_shipped_pack_plans_without_errors() -> None:
    plans = plan_tests(SHIPPED, load_ruleset(SHIPPED, known_score_names()))
    assert [str(issue) for plan in plans for issue in plan.errors] == []
    assert sum(len(plan.cases) for plan in plans) > 400
