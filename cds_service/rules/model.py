"""The rule file format (`schema: cds-rule/1`), as pydantic models.

This module *is* the schema: `openapi/rule.schema.json` is generated from `Rule`, and every
authored key is checked (`extra="forbid"`), so a typo such as `sumary:` is an error, not a
silently ignored line. The card template mirrors the CDS Hooks 2.0 Card member for member, in the
specification's own camelCase spelling.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

__all__ = [
    "ActionTemplate",
    "AllOf",
    "AnyOf",
    "CardTemplate",
    "CodingTemplate",
    "Condition",
    "LeafCondition",
    "LinkTemplate",
    "NotOf",
    "Rule",
    "Select",
    "SourceTemplate",
    "SuggestionTemplate",
    "Suppress",
]

KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
# A positive calendar duration: `90 days`, `6 months`, `1 year` (`within:`, `suppress.for`).
WITHIN = re.compile(r"^\s*[1-9][0-9]{0,4}\s+(day|week|month|year)s?\s*$")


class Authored(BaseModel):
    """Base of every authored model: unknown keys are errors, values are strict."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Text = Annotated[StrictStr, Field(min_length=1)]
Kebab = Annotated[StrictStr, Field(pattern=KEBAB.pattern, max_length=100)]
ResourceType = Annotated[StrictStr, Field(pattern=r"^[A-Z][A-Za-z]+$")]


class LeafCondition(Authored):
    """A named FHIRPath test: true only when the expression yields exactly `[true]`."""

    id: Kebab = Field(description="Name shown in test results and `rules explain`")
    fhirpath: Text = Field(description="FHIRPath; the root is the hook context")


class AllOf(Authored):
    """True when every member is true."""

    all: Annotated[list[Condition], Field(min_length=1)]


class AnyOf(Authored):
    """True when at least one member is true."""

    any: Annotated[list[Condition], Field(min_length=1)]


class NotOf(Authored):
    """True when the member is false."""

    not_: Condition = Field(alias="not")


Condition = LeafCondition | AllOf | AnyOf | NotOf


class Select(Authored):
    """Resources picked from the request's data through its per-request index.

    Faster than a FHIRPath `where()` over a whole Bundle: the data is indexed once per call by
    resource type and code, and identical selections are shared by every rule of the call.
    """

    resources: ResourceType | Annotated[list[ResourceType], Field(min_length=1)] = Field(
        description="Resource type, e.g. Observation, or several, in order: "
        "[MedicationRequest, MedicationStatement]"
    )
    from_: list[Text] | None = Field(
        default=None,
        alias="from",
        description="Prefetch keys or context fields to take them from (default: all prefetch)",
    )
    coded: Text | None = Field(
        default=None,
        description="Keep resources whose code is in this value set (id from rules/_valuesets)",
    )
    status: list[Text] | None = Field(
        default=None,
        description=(
            "Keep resources with one of these statuses: `clinicalStatus` for Condition and "
            "AllergyIntolerance (refuted and entered-in-error ones are then dropped too), "
            "`status` for everything else"
        ),
    )
    within: Annotated[StrictStr, Field(pattern=WITHIN.pattern)] | None = Field(
        default=None,
        description="Keep resources whose clinical date is at most this long before %now, "
        "e.g. '90 days', '6 months', '2 years'",
    )
    where: Text | None = Field(
        default=None, description="FHIRPath evaluated on each resource; kept when [true]"
    )
    sort: Text | None = Field(
        default=None,
        description="`date` (the clinical date: effective, onset, authoredOn, …) or a FHIRPath "
        "sort key on each resource; prefix with '-' for descending (newest first)",
    )
    first: StrictBool = Field(default=False, description="Keep only the first after sorting")


LetValue = Text | Select


class CodingTemplate(Authored):
    """A Coding (override reasons need `display`; so do we)."""

    system: Text
    code: Text
    display: Text


class TopicTemplate(Authored):
    system: Text
    code: Text
    display: Text | None = None


class SourceTemplate(Authored):
    label: Text
    url: Text | None = None
    icon: Text | None = None
    topic: TopicTemplate | None = None


class ActionTemplate(Authored):
    type: Literal["create", "update", "delete"]
    description: Text
    resource: dict[str, Any] | None = Field(
        default=None, description="FHIR resource; string values may use {{name}}"
    )
    resourceId: Text | None = None


class SuggestionTemplate(Authored):
    label: Text
    isRecommended: StrictBool | None = None
    actions: list[ActionTemplate] | None = None


class LinkTemplate(Authored):
    label: Text
    url: Text
    type: Literal["absolute", "smart"]
    appContext: Text | None = None
    autolaunchable: StrictBool | None = None


INDICATORS = ("info", "warning", "critical")
# A binding that names the indicator per call: the rendered card must still be info, warning or
# critical, or the rule's outcome is an error naming `indicator`.
INDICATOR_TEMPLATE = re.compile(r"^\{\{[A-Za-z][A-Za-z0-9_]*\}\}$")


class CardTemplate(Authored):
    """The card a rule emits, mirroring the CDS Hooks Card. Text may use {{name}}."""

    summary: Annotated[StrictStr, Field(min_length=1, max_length=139)]
    detail: Text | None = None
    indicator: StrictStr = Field(
        description="info, warning or critical; or `{{binding}}` whose value is one of them "
        "(e.g. from an allergy's criticality)",
        json_schema_extra={
            "anyOf": [{"enum": list(INDICATORS)}, {"pattern": INDICATOR_TEMPLATE.pattern}]
        },
    )
    source: SourceTemplate
    suggestions: list[SuggestionTemplate] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[CodingTemplate] | None = None
    links: list[LinkTemplate] | None = None

    @field_validator("indicator")
    @classmethod
    def _indicator(cls, value: str) -> str:
        if value in INDICATORS or INDICATOR_TEMPLATE.match(value):
            return value
        raise ValueError("must be info, warning or critical, or {{binding}} naming one of them")


class Suppress(Authored):
    """Overrides that snooze the rule for the patient: when a card of the rule is overridden with
    one of `reasons`, the rule shows that patient no card (outcome `suppressed`) for `for`."""

    reasons: Annotated[list[Text], Field(min_length=1)] = Field(
        description="Override reason codes, each one of the card's `overrideReasons` codes"
    )
    for_: Annotated[StrictStr, Field(pattern=WITHIN.pattern)] = Field(
        alias="for",
        description="How long after the override the rule stays silent for the patient, e.g. "
        "'30 days', '6 months', '1 year' (days, weeks, months or years)",
    )


class Rule(Authored):
    """One rule: when its conditions hold on a hook call, it emits one card."""

    schema_: Literal["cds-rule/1"] = Field(alias="schema")
    id: Kebab = Field(description="Equals the file name without .yaml")
    version: StrictInt | Text
    status: Literal["draft", "active", "retired"] = Field(
        description="draft: evaluated and counted but never returned (shadow mode)"
    )
    hook: Text
    service: Kebab = Field(description="The CDS service (from _services.yaml) it belongs to")
    title: Text
    description: Text
    author: Text | None = None
    references: Annotated[list[Text], Field(min_length=1)]
    tags: list[Text] = Field(default_factory=list)
    prefetch: dict[str, Text] = Field(default_factory=dict)
    optionalPrefetch: list[Text] = Field(
        default_factory=list,
        description="Prefetch keys the rule is evaluated without (as empty) when they cannot be "
        "obtained; without them listed here, such a rule is skipped",
    )
    scores: list[Text] = Field(default_factory=list)
    let: dict[str, LetValue] = Field(default_factory=dict)
    when: Condition
    card: CardTemplate
    suppress: Suppress | None = Field(
        default=None,
        description="Override reasons that snooze the rule for the patient, and for how long",
    )

    @field_validator("let")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not NAME.match(name):
                raise ValueError(f"binding name {name!r} must be letters, digits and '_'")
        return value


class ServiceEntry(Authored):
    """One service in `rules/_services.yaml`."""

    title: Text
    description: Text
    usageRequirements: Text | None = None


class ServicesFile(Authored):
    """`rules/_services.yaml`: the services rules are grouped into."""

    schema_: Literal["cds-services/1"] = Field(alias="schema")
    services: dict[Kebab, ServiceEntry]


for _model in (AllOf, AnyOf, NotOf):
    _model.model_rebuild()
