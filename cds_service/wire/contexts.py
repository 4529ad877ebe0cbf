"""Typed `context` models for every hook of the HL7 hook library (v1.0.1).

Each hook's table gives the fields, whether they are required, and which are prefetch tokens.
Unknown members are kept (`extra="allow"`): hooks gain fields between versions and rules may read
them. Hooks that are not in the library but follow the reverse-domain naming rule
(`org.example.my-hook`) are accepted with a generic context.

Quirks of the official examples accepted on purpose:
- allergyintolerance-create's R4 example wraps the resource as `{"resource": {...}}`;
- order-dispatch's examples spell `fulfillmentTasks` / `dispatchedOrders` with hyphens;
- appointment-book's examples sometimes send a bare array of Appointments instead of a Bundle;
- medication-verify's example names its field `order` instead of `medication`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from cds_service.wire.fhir import FhirBundle, FhirId, FhirResource, Reference, check_resource

__all__ = [
    "HOOKS",
    "HookContext",
    "HookSpec",
    "hook_spec",
    "is_reverse_domain",
]


class HookContext(BaseModel):
    """Base of every hook context."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
        hide_input_in_errors=True,
    )

    user_types: ClassVar[tuple[str, ...]] = ()

    @field_validator("user_id", mode="after", check_fields=False)
    @classmethod
    def _user_type(cls, value: str | None) -> str | None:
        if value is not None and value.split("/", 1)[0] not in cls.user_types:
            allowed = ", ".join(cls.user_types)
            raise ValueError(f"must reference one of: {allowed}")
        return value


def _unwrap_resource(value: Any) -> Any:
    """Accept `{"resource": {...}}` as well as the bare resource."""
    if isinstance(value, dict) and "resourceType" not in value and set(value) == {"resource"}:
        return value["resource"]
    return value


def _of_type(*types: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        resource = check_resource(_unwrap_resource(value))
        if resource["resourceType"] not in types:
            raise ValueError(f"must be a {' or '.join(types)} resource")
        return resource

    return BeforeValidator(check)


Refs = Annotated[list[Reference], Field(min_length=1)]
CLINICIANS: tuple[str, ...] = ("Practitioner", "PractitionerRole")
ANY_USER: tuple[str, ...] = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")
PRACTITIONER: tuple[str, ...] = ("Practitioner",)


class ClinicalContext(HookContext):
    """The fields most hooks share: who is acting, for which patient, in which encounter."""

    user_types = CLINICIANS
    user_id: Reference
    patient_id: FhirId
    encounter_id: FhirId | None = None


class PatientViewContext(ClinicalContext):
    user_types = ANY_USER


class OrderSelectContext(ClinicalContext):
    selections: Refs
    draft_orders: FhirBundle


class OrderSignContext(ClinicalContext):
    draft_orders: FhirBundle


def _array_as_bundle(value: Any) -> Any:
    """Some examples send a bare array of resources where the table says Bundle."""
    if isinstance(value, list):
        entries = [{"resource": item} for item in value]
        return {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return value


class AppointmentBookContext(ClinicalContext):
    user_types = ANY_USER
    appointments: Annotated[FhirBundle, BeforeValidator(_array_as_bundle)]


class EncounterContext(ClinicalContext):
    encounter_id: FhirId


class OrderDispatchContext(HookContext):
    patient_id: FhirId
    dispatched_orders: Refs = Field(
        validation_alias=AliasChoices("dispatchedOrders", "dispatched-orders")
    )
    performer: Reference
    fulfillment_tasks: Annotated[list[FhirResource], Field(min_length=1)] | None = Field(
        default=None, validation_alias=AliasChoices("fulfillmentTasks", "fulfillment-tasks")
    )


class MedicationRefillContext(ClinicalContext):
    user_id: Reference | None = None  # type: ignore[assignment]  # optional on this hook only
    medications: FhirBundle


class AllergyIntoleranceCreateContext(ClinicalContext):
    user_types = PRACTITIONER
    allergy_intolerance: Annotated[dict[str, Any], _of_type("AllergyIntolerance")]


class ProblemListItemCreateContext(ClinicalContext):
    conditions: FhirBundle


class MedicationPrescribeContext(ClinicalContext):
    user_types = PRACTITIONER
    medications: FhirBundle


class OrderReviewContext(ClinicalContext):
    user_types = PRACTITIONER
    orders: FhirBundle


class MedicationVerifyContext(ClinicalContext):
    medication: Annotated[dict[str, Any], _of_type("MedicationRequest")] = Field(
        validation_alias=AliasChoices("medication", "order")
    )


class GenericContext(HookContext):
    """The context of a reverse-domain hook we have no model for: any JSON object."""


@dataclass(frozen=True, slots=True)
class HookSpec:
    """What we know about a hook: its context model and its status in the library."""

    name: str
    context: type[HookContext]
    status: str = "library"  # library | deprecated | draft | custom


HOOKS: dict[str, HookSpec] = {
    spec.name: spec
    for spec in (
        HookSpec("patient-view", PatientViewContext),
        HookSpec("order-select", OrderSelectContext),
        HookSpec("order-sign", OrderSignContext),
        HookSpec("appointment-book", AppointmentBookContext),
        HookSpec("encounter-start", EncounterContext),
        HookSpec("encounter-discharge", EncounterContext),
        HookSpec("order-dispatch", OrderDispatchContext),
        HookSpec("medication-refill", MedicationRefillContext),
        HookSpec("allergyintolerance-create", AllergyIntoleranceCreateContext),
        HookSpec("problem-list-item-create", ProblemListItemCreateContext),
        HookSpec("medication-prescribe", MedicationPrescribeContext, "deprecated"),
        HookSpec("order-review", OrderReviewContext, "deprecated"),
        HookSpec("medication-verify", MedicationVerifyContext, "draft"),
    )
}


def is_reverse_domain(hook: str) -> bool:
    """`org.example.my-hook`: at least two dot-separated labels before the hook's own name."""
    return hook.count(".") >= 2


def hook_spec(hook: str) -> HookSpec | None:
    """The spec of a library hook, a generic spec for a reverse-domain hook, else None."""
    spec = HOOKS.get(hook)
    if spec is None and is_reverse_domain(hook):
        return HookSpec(hook, GenericContext, "custom")
    return spec
