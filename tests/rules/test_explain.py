"""`cds-service rules explain`: bindings, the condition tree, the status and the card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cds_service.rules.cli import main
from tests.rules.conftest import SAMPLE_RULE, load_rules
from tests.rules.testing.support import SUMMARY, WARFARIN_BUNDLE

IBUPROFEN = {
    "resourceType": "MedicationRequest",
    "id": "mr-ibu",
    "status": "draft",
    "intent": "order",
    "subject": {"reference": "Patient/p1"},
    "medicationCodeableConcept": {
        "text": "Ibuprofen 200 MG Oral Tablet",
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "310965"}],
    },
}


def request(tmp_path: Path, **changes: Any) -> Path:
    body: dict[str, Any] = {
        "hook": "order-select",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {
            "userId": "Practitioner/dr-1",
            "patientId": "p1",
            "selections": ["MedicationRequest/mr-ibu"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": IBUPROFEN}],
            },
        },
        "prefetch": {"activeMedications": WARFARIN_BUNDLE},
    }
    body.update(changes)
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    return path


def explain(rules_dir: Path, *args: str) -> int:
    return main(["rules", "explain", SAMPLE_RULE, "--rules", str(rules_dir), *args])


def test_explain_shows_bindings_conditions_status_and_card(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = request(tmp_path)
    assert explain(rules_dir, "--request", str(path), "--now", "2026-11-28T12:00:00Z") == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == (
        f"rule {SAMPLE_RULE} v1 (active): NSAID selected for a patient on an oral anticoagulant"
    )
    assert lines[1] == "hook order-select, service medication-safety, now 2026-11-28T12:00:00Z"
    assert "  activeMedications: prefetch (Bundle, 1 entry)" in lines
    binding = next(line for line in lines if line.startswith("  nsaidOrder = "))
    assert binding.startswith(
        '  nsaidOrder = [{"resourceType": "MedicationRequest", "id": "mr-ibu"'
    )
    assert len(binding) <= len("  nsaidOrder = ") + 120 and binding.endswith("…")
    assert '  nsaidName = ["Ibuprofen 200 MG Oral Tablet"]' in lines
    assert '  nsaidOrderRef = ["MedicationRequest/mr-ibu"]' in lines
    start = lines.index("conditions:")
    assert lines[start + 1 : start + 4] == [
        "  all: true",
        "    nsaid-selected: true    %nsaidOrder.exists()",
        "    on-anticoagulant: true    %anticoagulant.exists()",
    ]
    assert "status: fired" in lines
    card = json.loads(out[out.index("card:\n") + len("card:\n") :])
    assert card["summary"] == SUMMARY
    assert card["indicator"] == "warning"


def test_missing_prefetch_is_unavailable_and_the_rule_skipped(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = request(tmp_path, prefetch={}, fhirServer="https://ehr.example.org/fhir")
    assert explain(rules_dir, "--request", str(path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert (
        "  activeMedications: unavailable: not in the request "
        "(explain does not fetch from the FHIR server)"
    ) in lines
    assert "  nsaidOrder: not evaluated" in lines
    assert "  all: not evaluated" in lines
    assert "status: skipped (data unavailable: activeMedications)" in lines
    assert lines[-1] == "card: none"


def test_a_silent_rule_shows_which_condition_was_false(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = request(tmp_path, prefetch={"activeMedications": None})
    assert explain(rules_dir, "--request", str(path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  activeMedications: null (the query found nothing)" in lines
    assert "  anticoagulant = []" in lines
    assert "  all: false" in lines
    assert "    on-anticoagulant: false    %anticoagulant.exists()" in lines
    assert "status: silent" in lines


def test_explain_names_the_medication_references_it_cannot_resolve(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    referenced = {
        "resourceType": "MedicationRequest",
        "id": "mr-ref",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "Medication/not-sent"},
    }
    bundle = {"resourceType": "Bundle", "entry": [{"resource": referenced}]}
    path = request(tmp_path, prefetch={"activeMedications": bundle})
    assert explain(rules_dir, "--request", str(path)) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("medication references not resolved (drug unknown: in no value set):")
    assert lines[at + 1] == "  MedicationRequest/mr-ref: Medication/not-sent"
    assert "    on-anticoagulant: false    %anticoagulant.exists()" in lines


@pytest.mark.parametrize(
    ("rule_id", "body", "now", "message"),
    [
        ("no-such-rule", {}, None, "unknown rule 'no-such-rule'"),
        (SAMPLE_RULE, {"hook": "patient-view"}, None, "the request is a 'patient-view' call"),
        (SAMPLE_RULE, {"hookInstance": "x"}, None, "not a valid CDS Hooks request"),
        (SAMPLE_RULE, {"context": {"patientId": "p1"}}, None, "the context is invalid"),
        (SAMPLE_RULE, {}, "yesterday", "--now: 'yesterday' is not an ISO 8601 date-time"),
    ],
)
def test_explain_problems_exit_1_with_a_message(
    rules_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    rule_id: str,
    body: dict[str, Any],
    now: str | None,
    message: str,
) -> None:
    args = ["rules", "explain", rule_id, "--rules", str(rules_dir)]
    args += ["--request", str(request(tmp_path, **body))]
    if now is not None:
        args += ["--now", now]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_explain_of_a_rule_that_does_not_load_shows_its_errors(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    rule.write_text(rule.read_text().replace("indicator: warning", "indicator: loud"))
    assert explain(rules_dir, "--request", str(request(tmp_path))) == 1
    err = capsys.readouterr().err
    assert f"rule '{SAMPLE_RULE}' did not load:" in err
    assert f"{rule}:" in err and "card.indicator:" in err


def test_explain_of_an_unreadable_request(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "request.json"
    path.write_text('{"hook": ')
    assert explain(rules_dir, "--request", str(path)) == 1
    assert f"{path}:1:10: invalid JSON" in capsys.readouterr().err


def test_explain_gives_the_production_verdict_and_marks_display_only_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A binding that fails but that production never computes (the `all` is decided before
    its condition) does not turn the verdict into an error: explain shows the lazy verdict and
    says the eager pass failed where production does not."""
    explain_lazy_rule(tmp_path, "all", "a", "b")
    out = capsys.readouterr().out
    assert "status: silent" in out
    assert "  count = [2]" in out
    assert "  only: not evaluated" in out  # the eager pass failed there
    assert "has-many: false" in out
    assert "(evaluating every binding for display: error" in out


def test_explain_marks_values_computed_for_display_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    explain_lazy_rule(tmp_path, "all", "a")
    out = capsys.readouterr().out
    assert "status: silent" in out
    assert '* only = ["a"]' in out
    assert "only-is-a: true" in out  # shown, though `all` was decided by has-many
    assert "evaluating every binding for display" not in out


def explain_lazy_rule(tmp_path: Path, quantifier: str, *lab_ids: str) -> str:
    """`rules explain` of tests/rules/test_lazy.py's rule on a patient-view call with labs."""
    from tests.rules.test_lazy import RULE

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    load_rules(rules_dir, {"lazy": RULE.replace("QUANTIFIER", quantifier)})
    labs = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": i}} for i in lab_ids],
    }
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        "prefetch": {"labs": labs},
    }
    path = tmp_path / "request.json"
    path.write_text(json.dumps(body))
    args = ["rules", "explain", "lazy", "--rules", str(rules_dir), "--request", str(path)]
    assert main(args) == 0
    return str(rules_dir)


def test_explain_applies_the_overrides_given(
    rules_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = rules_dir / "order-select" / f"{SAMPLE_RULE}.yaml"
    rule.write_text(rule.read_text() + "suppress:\n  reasons: [short-course]\n  for: 30 days\n")
    at = ("--request", str(request(tmp_path)), "--now", "2026-11-28T12:00:00Z")
    assert explain(rules_dir, *at) == 0
    out = capsys.readouterr().out
    assert "suppress: short-course for 30 days\n" in out
    assert "  overrides given: none (--override CODE@WHEN)\n" in out
    assert "status: fired\n" in out
    assert explain(rules_dir, *at, "--override", "short-course@2026-11-20T08:00:00Z") == 0
    out = capsys.readouterr().out
    assert "  overrides given: short-course at 2026-11-20T08:00:00Z\n" in out
    assert (
        "status: suppressed (snoozed until 2026-12-20T08:00:00+00:00: overridden (short-course) "
        "at 2026-11-20T08:00:00+00:00)\ncard: none\n"
    ) in out
    # The override a month earlier has run out; another reason never snoozes.
    earlier = (
        "--override",
        "short-course@2026-10-20",
        "--override",
        "benefit-outweighs-risk@2026-11-27",
    )
    assert explain(rules_dir, *at, *earlier) == 0
    assert "status: fired\n" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("declined@2026-11-20", "--override: 'declined' is not a code of rule"),
        ("short-course", "--override: 'short-course' is not CODE@WHEN"),
        ("short-course@yesterday", "--override: 'yesterday' is not an ISO 8601 date-time"),
    ],
)
def test_explain_refuses_overrides_it_cannot_read(
    rules_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    override: str,
    message: str,
) -> None:
    path = request(tmp_path)
    assert explain(rules_dir, "--request", str(path), "--override", override) == 1
    assert message in capsys.readouterr().err
