"""What the FHIR R4 model allows, for lint: the elements of a type with the types each holds,
and the codes of the status a `select:` filters on.

Elements come from the `fhir.resources` models (R4B, the closest release it ships to R4; the
elements rules read are the same): each element's JSON name, and for a choice element both
`value` and `valueQuantity`, as FHIRPath reads either. Status codes are the FHIR R4 required
bindings (`status` of each type; `clinicalStatus` of Condition and AllergyIntolerance, which a
selection's `status:` filters on).
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

__all__ = ["ANY_RESOURCE", "STATUS_CODES", "element_types", "elements", "status_codes"]

#: The abstract types of an element that may hold any resource (`Bundle.entry.resource`).
ANY_RESOURCE = frozenset({"Resource", "DomainResource"})

_REQUEST = ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown")
STATUS_CODES: dict[str, tuple[str, ...]] = {
    "AllergyIntolerance": ("active", "inactive", "resolved"),
    "Appointment": (
        "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
        "entered-in-error", "checked-in", "waitlist",
    ),
    "CarePlan": _REQUEST,
    "Condition": ("active", "recurrence", "relapse", "inactive", "remission", "resolved"),
    "Coverage": ("active", "cancelled", "draft", "entered-in-error"),
    "Device": ("active", "inactive", "entered-in-error", "unknown"),
    "DeviceRequest": (*_REQUEST, "cancelled"),
    "DiagnosticReport": (
        "registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
        "cancelled", "entered-in-error", "unknown",
    ),
    "Encounter": (
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
        "entered-in-error", "unknown",
    ),
    "Immunization": ("completed", "entered-in-error", "not-done"),
    "MedicationAdministration": (
        "in-progress", "not-done", "on-hold", "completed", "entered-in-error", "stopped", "unknown",
    ),
    "MedicationDispense": (
        "preparation", "in-progress", "cancelled", "on-hold", "completed", "entered-in-error",
        "stopped", "declined", "unknown",
    ),
    "MedicationRequest": (
        "active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped", "draft",
        "unknown",
    ),
    "MedicationStatement": (
        "active", "completed", "entered-in-error", "intended", "stopped", "on-hold", "unknown",
        "not-taken",
    ),
    "NutritionOrder": _REQUEST,
    "Observation": (
        "registered", "preliminary", "final", "amended", "corrected", "cancelled",
        "entered-in-error", "unknown",
    ),
    "Procedure": (
        "preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
        "entered-in-error", "unknown",
    ),
    "ServiceRequest": _REQUEST,
}  # fmt: skip


def status_codes(resource_types: tuple[str, ...]) -> frozenset[str] | None:
    """The status codes a selection of these types may filter on; None when a type's are not
    listed here (then nothing is checked)."""
    codes: set[str] = set()
    for resource_type in resource_types:
        known = STATUS_CODES.get(resource_type)
        if known is None:
            return None
        codes.update(known)
    return frozenset(codes)


def elements(resource_type: str) -> frozenset[str] | None:
    """The element names of a resource type (FHIRPath's: `value` and `valueQuantity` for a
    choice), or None for a name the model does not know."""
    table = element_types(resource_type)
    return None if table is None else frozenset(table)


@functools.lru_cache(maxsize=512)
def element_types(type_name: str) -> dict[str, frozenset[str]] | None:
    """Each element of a FHIR type (a resource, a data type such as `Quantity`, or a backbone
    element such as `ObservationComponent`) with the types it may hold: a choice element under
    its FHIRPath name (`value`) holds every type of its `value[x]`, under its typed name
    (`valueQuantity`) one. Primitive types are named as FHIR names them (`dateTime`). None for a
    type the model does not know, and for primitives (no elements a rule reads)."""
    if not type_name[:1].isupper():
        return None
    try:
        model: Any = get_fhir_model_class(type_name)
    except (KeyError, ValueError, LookupError):
        return None
    found: dict[str, set[str]] = {}
    if issubclass(model, get_fhir_model_class("Resource")):
        found["resourceType"] = {"code"}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if alias.startswith("_") or name == "fhir_comments" or name.endswith("__ext"):
            continue
        held = _type_names(info.annotation)
        found.setdefault(alias, set()).update(held)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        choice = extra.get("one_of_many")
        if isinstance(choice, str):
            found.setdefault(choice, set()).update(held)
    return {element: frozenset(held) for element, held in found.items()}


def _type_names(annotation: Any) -> set[str]:
    """The FHIR type names an element's annotation allows (`Optional[List[CodingType]]`:
    Coding; `Annotated[datetime, DateTime()]`: dateTime)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        named = {_lower_first(type(m).__name__) for m in metadata if _is_fhir_primitive(m)}
        return named or _type_names(base)
    if origin in (typing.Union, types.UnionType, list, typing.List):  # noqa: UP006
        return {name for arg in typing.get_args(annotation) for name in _type_names(arg)}
    if annotation in _PYTHON_PRIMITIVES:
        return {_PYTHON_PRIMITIVES[annotation]}
    name = getattr(annotation, "__name__", "")
    if isinstance(annotation, type) and name.endswith("Type") and name != "NoneType":
        return {name.removesuffix("Type")}
    return set()


_PYTHON_PRIMITIVES = {bool: "boolean", int: "integer", float: "decimal", str: "string"}


def _is_fhir_primitive(metadata: Any) -> bool:
    return type(metadata).__module__.startswith("fhir_core")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]
