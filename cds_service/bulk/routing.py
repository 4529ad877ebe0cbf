"""Which patient a FHIR resource belongs to: the one routing of Bulk Data resources.

`route` sorts a resource into one of four kinds, used by every reader of a population (the
population engine's partitioning, `rules simulate`, `precompute`):

- ``patient``: a Patient (by its id), or a resource whose `subject`, `patient` or
  `beneficiary` references a Patient (the first of them that does);
- ``shared``: a resource no one patient owns (`SHARED_TYPES`: Organization, Practitioner, …),
  kept once beside the records;
- ``encounter``: a resource that names no patient but an Encounter (`encounter`, or `context`
  as a reference or R4's ``context.encounter``): it follows that Encounter's patient, which
  only the Encounter says;
- ``unrouted``: nothing to go by (counted, not kept).

A reference names its target as ``Type/id``, ``urn:uuid:id`` (a Bundle's entries, whatever the
type) or an absolute URL ending in ``/Type/id``; a ``/_history/n`` suffix is ignored. A
conditional (``Patient?identifier=…``), contained (``#x``) or logical (identifier only)
reference names no id.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

__all__ = [
    "ENCOUNTER_FIELDS",
    "PATIENT_FIELDS",
    "SHARED_TYPES",
    "Route",
    "RouteKind",
    "encounter_of",
    "patient_of",
    "reference_id",
    "route",
]

PATIENT_FIELDS = ("subject", "patient", "beneficiary")
ENCOUNTER_FIELDS = ("encounter", "context")
#: Resources no one patient owns: kept once, beside the records.
SHARED_TYPES = frozenset(
    {"Organization", "Practitioner", "PractitionerRole", "Location", "Medication", "Substance"}
)

RouteKind = Literal["patient", "shared", "encounter", "unrouted"]


class Route(NamedTuple):
    """Where a resource goes: `key` is the patient id (``patient``), the encounter id
    (``encounter``), ``Type/id`` (``shared``; None when it has no id) or None (``unrouted``)."""

    kind: RouteKind
    key: str | None


def _reference_text_id(reference: str, resource_type: str) -> str | None:
    if reference.startswith("urn:uuid:"):
        return reference.removeprefix("urn:uuid:") or None
    if "?" in reference or reference.startswith("#"):
        return None
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
        return parts[-1]
    return None


def reference_id(value: Any, resource_type: str) -> str | None:
    """The id a Reference (a dict with `reference`) gives to a `resource_type`, or None."""
    if not isinstance(value, dict):
        return None
    reference = value.get("reference")
    if not isinstance(reference, str):
        return None
    return _reference_text_id(reference, resource_type)


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the patient a resource names (its own id for a Patient), or None."""
    if resource.get("resourceType") == "Patient":
        ident = resource.get("id")
        return ident if isinstance(ident, str) and ident else None
    for name in PATIENT_FIELDS:
        found = reference_id(resource.get(name), "Patient")
        if found:
            return found
    return None


def _encounter_in(value: Any) -> str | None:
    if isinstance(value, list):
        for item in value:
            if found := _encounter_in(item):
                return found
        return None
    if not isinstance(value, dict):
        return None
    if "reference" in value:
        return reference_id(value, "Encounter")
    return _encounter_in(value.get("encounter"))  # R4 DocumentReference.context.encounter


def encounter_of(resource: dict[str, Any]) -> str | None:
    """The id of the Encounter a resource names in `encounter` or `context`, or None."""
    for name in ENCOUNTER_FIELDS:
        if found := _encounter_in(resource.get(name)):
            return found
    return None


def route(resource: dict[str, Any]) -> Route:
    """Where `resource` goes (see the module's description)."""
    resource_type = resource.get("resourceType")
    if resource_type in SHARED_TYPES:
        ident = resource.get("id")
        return Route("shared", f"{resource_type}/{ident}" if isinstance(ident, str) else None)
    patient = patient_of(resource)
    if patient is not None:
        return Route("patient", patient)
    encounter = encounter_of(resource)
    if encounter is not None:
        return Route("encounter", encounter)
    return Route("unrouted", None)
