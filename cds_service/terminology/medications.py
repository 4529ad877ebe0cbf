"""The drug of a medication resource, wherever the resource keeps it.

A MedicationRequest, MedicationStatement, MedicationAdministration or MedicationDispense names
its drug either inline (`medicationCodeableConcept`) or by reference (`medicationReference`) to
a Medication, whose `code` is the drug:

- `#id`: a Medication in the resource's own `contained`;
- `Medication/id` (or an absolute URL ending so, a version suffix ignored) or the `fullUrl` of a
  Bundle entry (`urn:uuid:…`): a Medication among the call's data, found in `medications`
  (see `medications_by_reference`).

A reference that points at nothing in hand is *unresolved*: the drug is unknown, so it is in
no value set. Nothing is fetched to resolve it: a rule sees the Medications its prefetch brings
(e.g. `MedicationRequest?…&_include=MedicationRequest:medication`).

    drug = drug_of(order, medications_by_reference(resources))
    coded(drug.concept, value_set("oral-anticoagulants"))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MEDICATION_TYPES",
    "DrugOf",
    "drug_of",
    "medication_key",
    "medications_by_reference",
]

MEDICATION_TYPES = frozenset(
    {"MedicationRequest", "MedicationStatement", "MedicationAdministration", "MedicationDispense"}
)


@dataclass(frozen=True, slots=True)
class DrugOf:
    """What a medication resource says its drug is."""

    concept: Any  # the CodeableConcept naming the drug, or None
    reference: str | None = None  # `medicationReference.reference`, when it names the drug so
    medication: dict[str, Any] | None = None  # the Medication the reference resolved to

    @property
    def unresolved(self) -> bool:
        """True when the drug is referenced and the Medication is not in hand."""
        return self.reference is not None and self.medication is None


def medication_key(reference: str) -> str:
    """How a reference to a Medication is looked up: `Medication/<id>` for relative and
    absolute URLs (`…/Medication/12/_history/3` → `Medication/12`), else the reference itself
    (`urn:uuid:…`)."""
    parts = reference.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == "Medication" and parts[-1]:
        return f"Medication/{parts[-1]}"
    return reference


def medications_by_reference(
    resources: Iterable[dict[str, Any] | tuple[dict[str, Any], str | None]],
) -> dict[str, dict[str, Any]]:
    """The Medications among `resources` (each alone or with its Bundle entry's `fullUrl`),
    by `Medication/<id>`, by full URL and by `urn:uuid:<id>` (a transaction Bundle's entries, as
    Synthea writes them, are `urn:uuid:` + the resource's id)."""
    found: dict[str, dict[str, Any]] = {}
    for item in resources:
        resource, full_url = item if isinstance(item, tuple) else (item, None)
        if not isinstance(resource, dict) or resource.get("resourceType") != "Medication":
            continue
        if isinstance(resource.get("id"), str):
            found.setdefault(f"Medication/{resource['id']}", resource)
            found.setdefault(f"urn:uuid:{resource['id']}", resource)
        if isinstance(full_url, str) and full_url:
            found.setdefault(full_url, resource)
            found.setdefault(medication_key(full_url), resource)
    return found


def _contained(resource: dict[str, Any], local_id: str) -> dict[str, Any] | None:
    for item in resource.get("contained") or []:
        if (
            isinstance(item, dict)
            and item.get("resourceType") == "Medication"
            and item.get("id") == local_id
        ):
            return item
    return None


def drug_of(resource: dict[str, Any], medications: Mapping[str, dict[str, Any]]) -> DrugOf:
    """The drug of a medication resource: its `medicationCodeableConcept`, or the `code` of the
    Medication its `medicationReference` resolves to (contained, or in `medications`)."""
    concept = resource.get("medicationCodeableConcept")
    if concept is not None:
        return DrugOf(concept)
    reference = resource.get("medicationReference")
    ref = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(ref, str) or not ref:
        return DrugOf(None)
    if ref.startswith("#"):
        medication = _contained(resource, ref[1:])
    else:
        medication = medications.get(ref) or medications.get(medication_key(ref))
    if medication is None:
        return DrugOf(None, ref)
    return DrugOf(medication.get("code"), ref, medication)
