"""Minimal FHIR JSON shapes checked at the boundary.

Resources stay plain JSON (dicts) on the hot path: full `fhir.resources` validation of a large
Bundle costs ~100 ms, far too much for a hook with a 500 ms budget, and real EHRs send ids and
codes that strict R4 validation rejects (the official order-sign example uses non-ASCII hyphens in
ids). We check what the service relies on: a JSON object with a `resourceType`, Bundles with
object entries, references of the form `Type/id`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from cds_service.fhirscan import reports_error

__all__ = [
    "FHIR_ID_PATTERN",
    "FhirBundle",
    "FhirId",
    "FhirResource",
    "Reference",
    "bundle_resources",
    "check_bundle",
    "check_resource",
    "is_operation_outcome",
    "reference_of",
]

FHIR_ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")


def check_resource(value: Any) -> dict[str, Any]:
    """Accept a JSON object with a well-formed `resourceType`; raise ValueError otherwise."""
    if not isinstance(value, dict):
        raise ValueError("must be a FHIR resource (a JSON object)")
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str) or not _RESOURCE_TYPE.match(resource_type):
        raise ValueError("must be a FHIR resource with a valid 'resourceType'")
    return value


def check_bundle(value: Any) -> dict[str, Any]:
    """Accept a FHIR Bundle whose `entry` (if any) is a list of objects."""
    resource = check_resource(value)
    if resource["resourceType"] != "Bundle":
        raise ValueError(f"must be a FHIR Bundle, not {resource['resourceType']}")
    entries = resource.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("Bundle.entry must be a list of objects")
    for index, entry in enumerate(entries):
        if "resource" in entry:
            try:
                check_resource(entry["resource"])
            except ValueError as exc:
                raise ValueError(f"Bundle.entry[{index}].resource {exc}") from None
    return resource


def _check_id(value: str) -> str:
    if not FHIR_ID_PATTERN.match(value):
        raise ValueError("must be a FHIR id (1-64 characters: letters, digits, '-' and '.')")
    return value


def _check_reference(value: str) -> str:
    if not _REFERENCE.match(value):
        raise ValueError("must be a relative FHIR reference of the form 'ResourceType/id'")
    return value


def _must_be_str(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


FhirResource = Annotated[dict[str, Any], BeforeValidator(check_resource)]
FhirBundle = Annotated[dict[str, Any], BeforeValidator(check_bundle)]
FhirId = Annotated[str, BeforeValidator(_must_be_str), AfterValidator(_check_id)]
Reference = Annotated[str, BeforeValidator(_must_be_str), AfterValidator(_check_reference)]


def reference_of(value: str) -> tuple[str, str] | None:
    """Split `Type/id` into its parts, or None when it is not a relative reference."""
    match = _REFERENCE.match(value)
    return (match.group(1), match.group(2)) if match else None


def bundle_resources(bundle: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The resources of a Bundle's entries (entries without a resource are skipped)."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(entries, list):
        return []
    return [
        entry["resource"]
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    ]


def is_operation_outcome(value: Any) -> bool:
    """True for an OperationOutcome, or a Bundle whose entries report an error or fatal issue."""
    if not isinstance(value, dict):
        return False
    if value.get("resourceType") == "OperationOutcome":
        return True
    if value.get("resourceType") != "Bundle":
        return False
    entries = value.get("entry")
    # Every entry of every prefetched Bundle passes here: the scan is native (fhirscan).
    return isinstance(entries, list) and reports_error(entries)
