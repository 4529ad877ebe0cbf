"""`Select` bindings: the indexed, shared way to pick resources (type, code, status, date)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.rules.engine import RequestData, evaluate_rule
from tests.rules.conftest import load_rules, value_set

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def obs(
    ident: str, when: str | None, status: str = "final", code: str = "4548-4"
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ident,
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "valueQuantity": {"value": 6.1, "unit": "%"},
    }
    if when:
        out["effectiveDateTime"] = when
    return out


def cond(ident: str, clinical: str, verification: str = "confirmed") -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": ident,
        "clinicalStatus": {"coding": [{"code": clinical}]},
        "verificationStatus": {"coding": [{"code": verification}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


RULE = """\
prefetch:
  labs: Observation?patient={{{{context.patientId}}}}
  conditions: Condition?patient={{{{context.patientId}}}}
let:
  picked:
{select}
  ids: "%picked.id"
when: {{id: any, fhirpath: "%picked.exists()"}}
card:
  summary: "{{{{ids}}}}"
  indicator: info
  source: {{label: s}}
"""


def pick(
    tmp_path: Path, select: str, prefetch: dict[str, Any], data: RequestData | None = None
) -> list[str]:
    indented = "\n".join("    " + line for line in select.strip().splitlines())
    value_sets = {
        "hba1c": value_set("hba1c", "4548-4"),
        "anticoagulants": value_set("anticoagulants", "1364430", system=RXNORM),  # apixaban
    }
    rules = load_rules(tmp_path, {"pick": RULE.format(select=indented)}, value_sets)
    data = data or RequestData({"patientId": "p"}, prefetch, now=NOW)
    outcome = evaluate_rule(rules["pick"], data)
    assert outcome.status in ("fired", "silent"), outcome.reason
    return [r["id"] for r in outcome.bindings["picked"]]


def test_status_of_observations(tmp_path: Path) -> None:
    labs = bundle(
        obs("a", "2026-01-01", "final"),
        obs("b", "2026-01-02", "preliminary"),
        obs("c", "2026-01-03", "amended"),
    )
    got = pick(tmp_path, "resources: Observation\nstatus: [final, amended]", {"labs": labs})
    assert got == ["a", "c"]


def test_status_of_conditions_uses_clinical_status_and_drops_refuted(tmp_path: Path) -> None:
    conditions = bundle(
        cond("active", "active"),
        cond("resolved", "resolved"),
        cond("refuted", "active", "refuted"),
        cond("relapse", "relapse"),
    )
    got = pick(
        tmp_path, "resources: Condition\nstatus: [active, relapse]", {"conditions": conditions}
    )
    assert got == ["active", "relapse"]


@pytest.mark.parametrize(
    ("within", "expected"),
    [
        ("90 days", ["recent"]),
        ("6 months", ["recent", "october"]),
        ("1 year", ["recent", "october", "april"]),
        ("2 years", ["recent", "october", "april"]),
    ],
)
def test_within_counts_back_from_now(tmp_path: Path, within: str, expected: list[str]) -> None:
    labs = bundle(
        obs("recent", "2026-03-01"),
        obs("october", "2025-10-15T08:00:00-04:00"),
        obs("april", "2025-04-01"),
        obs("old", "2024-03-30"),
        obs("undated", None),
        obs("future", "2026-05-01"),
    )
    got = pick(tmp_path, f"resources: Observation\nwithin: {within}", {"labs": labs})
    assert got == expected


def test_sort_by_clinical_date_newest_first(tmp_path: Path) -> None:
    labs = bundle(
        obs("mid", "2025-06-01"),
        obs("new", "2026-01-01T00:00:00Z"),
        obs("old", "2024"),
        obs("undated", None),
    )
    newest = pick(tmp_path, "resources: Observation\nsort: -date", {"labs": labs})
    oldest = pick(tmp_path, "resources: Observation\nsort: date\nfirst: true", {"labs": labs})
    assert newest == ["new", "mid", "old", "undated"]
    assert oldest == ["undated"]


def test_coded_and_first(tmp_path: Path) -> None:
    labs = bundle(
        obs("a1c-old", "2025-01-01"),
        obs("bmi", "2026-01-01", code="39156-5"),
        obs("a1c-new", "2026-02-01"),
    )
    select = "resources: Observation\ncoded: hba1c\nsort: -date\nfirst: true"
    assert pick(tmp_path, select, {"labs": labs}) == ["a1c-new"]


def order(ident: str, **drug: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationRequest", "id": ident, "status": "active", **drug}


def test_coded_medications_by_ingredient_contained_or_referenced(tmp_path: Path) -> None:
    """`coded:` reads a medication's drug inline or in the Medication it references (contained,
    or in any prefetch key); a set listing the ingredient apixaban takes the branded Eliquis."""
    eliquis = {"coding": [{"system": RXNORM, "code": "1364447"}]}  # apixaban 5 MG … [Eliquis]
    meds = bundle(
        order(
            "contained",
            medicationReference={"reference": "#m"},
            contained=[{"resourceType": "Medication", "id": "m", "code": eliquis}],
        ),
        order("referenced", medicationReference={"reference": "Medication/eliquis"}),
        order("elsewhere", medicationReference={"reference": "Medication/elsewhere"}),
        order("inline", medicationCodeableConcept=eliquis),
        order(
            "other", medicationCodeableConcept={"coding": [{"system": RXNORM, "code": "313782"}]}
        ),
    )
    medication = {"resourceType": "Medication", "id": "eliquis", "code": eliquis}
    prefetch = {"labs": meds, "conditions": bundle(medication)}
    data = RequestData({"patientId": "p"}, prefetch, now=NOW)
    select = "resources: MedicationRequest\nfrom: [labs]\ncoded: anticoagulants"
    assert pick(tmp_path, select, prefetch, data) == ["contained", "referenced", "inline"]
    # the reference that resolves to nothing matched nothing, and says so
    assert data.index.unresolved == {"MedicationRequest/elsewhere": "Medication/elsewhere"}


def test_a_medication_is_found_by_its_bundle_entry_full_url(tmp_path: Path) -> None:
    """A reference may name the Medication by its entry's `fullUrl` (a transaction's `urn:uuid:`,
    or the server's absolute URL), which need not contain the resource's id; the first
    Medication by a name wins, in the order of the keys."""
    eliquis = {"coding": [{"system": RXNORM, "code": "1364447"}]}
    warfarin = {"coding": [{"system": RXNORM, "code": "855332"}]}
    urn = "urn:uuid:5b1e2b4e-8f0e-4d7c-9a55-0c2a7a1f3e10"
    absolute = "https://ehr.example/fhir/Medication/abc/_history/2"
    meds = bundle(
        order("by-urn", medicationReference={"reference": urn}),
        order(
            "by-url", medicationReference={"reference": "https://ehr.example/fhir/Medication/abc"}
        ),
        order("by-key", medicationReference={"reference": "Medication/abc"}),
    )
    others = {
        "resourceType": "Bundle",
        "entry": [
            {
                "fullUrl": urn,
                "resource": {"resourceType": "Medication", "id": "m-77", "code": eliquis},
            },
            {
                "fullUrl": absolute,
                "resource": {"resourceType": "Medication", "id": "x", "code": eliquis},
            },
        ],
    }
    later = bundle({"resourceType": "Medication", "id": "abc", "code": warfarin})
    prefetch = {"labs": meds, "conditions": others, "more": later}
    data = RequestData({"patientId": "p"}, prefetch, now=NOW)
    select = "resources: MedicationRequest\nfrom: [labs]\ncoded: anticoagulants"
    assert pick(tmp_path, select, prefetch, data) == ["by-urn", "by-url", "by-key"]
    assert data.index.unresolved == {}


def test_several_resource_types_in_order(tmp_path: Path) -> None:
    """`resources: [MedicationRequest, MedicationStatement]`: taking a drug is either."""
    eliquis = {"coding": [{"system": RXNORM, "code": "1364445"}]}
    statement = {"resourceType": "MedicationStatement", "id": "said", "status": "active"}
    meds = bundle(
        statement | {"medicationCodeableConcept": eliquis},
        order("ordered", medicationCodeableConcept=eliquis),
        order("stopped", medicationCodeableConcept=eliquis) | {"status": "stopped"},
    )
    select = (
        "resources: [MedicationRequest, MedicationStatement]\ncoded: anticoagulants\n"
        "status: [active]"
    )
    assert pick(tmp_path, select, {"labs": meds}) == ["ordered", "said"]


def test_an_optional_prefetch_key_does_not_skip_the_rule(tmp_path: Path) -> None:
    text = RULE.format(select="    resources: Condition").replace(
        "let:", "optionalPrefetch: [labs]\nlet:"
    )
    rules = load_rules(tmp_path, {"pick": text})
    both = RequestData({"patientId": "p"}, {}, frozenset({"labs", "conditions"}), now=NOW)
    assert evaluate_rule(rules["pick"], both).reason == "data unavailable: conditions"
    only_labs = RequestData({"patientId": "p"}, {"conditions": None}, frozenset({"labs"}), now=NOW)
    assert evaluate_rule(rules["pick"], only_labs).status == "silent"
