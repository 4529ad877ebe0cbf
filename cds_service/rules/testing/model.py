"""The rule test file format (`schema: cds-rule-test/1`), as pydantic models, and reading one.

`<rule-id>.test.yaml` sits beside its rule. It holds cases; each case is one hook call: the
context, the prefetch the client sends (an absent key is not sent; `null` means "the query found
nothing"), injected risk scores, the feedback clinicians gave earlier on the rule's cards for the
patient (what a `suppress:` block snoozes on), and optionally a mock FHIR server that answers the
queries for prefetch the client did not send. `openapi/rule-test.schema.json` is generated from
`RuleTestFile`, so editors complete and check these files.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
)

from cds_service.issues import RuleIssue
from cds_service.rules.model import Kebab
from cds_service.rules.ruleset import validation_issues
from cds_service.types import JSONObject as JsonObject
from cds_service.yamlsource import Located, read_yaml

__all__ = [
    "TEST_SUFFIX",
    "CaseFeedback",
    "Expectation",
    "MockFhirServer",
    "RuleTestCase",
    "RuleTestFile",
    "Status",
    "read_test_file",
    "rule_test_files",
]

TEST_SUFFIX = ".test.yaml"
# What a case may expect: a rule that errors or runs past its budget always fails its case.
# `shadow`: a draft rule that fired (its card is never returned to EHRs).
Status = Literal["fired", "shadow", "silent", "skipped", "suppressed"]
Loc = tuple[str | int, ...]


class _Authored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Text = Annotated[StrictStr, Field(min_length=1)]


class MockFhirServer(_Authored):
    """A FHIR server answering the queries for prefetch the client did not send."""

    responses: dict[str, JsonObject] = Field(
        default_factory=dict,
        description=(
            "Relative URL (with query, e.g. `MedicationRequest?patient=p1&status=active`) → the "
            "resource or Bundle returned. Any other URL answers 400 with an OperationOutcome "
            "(cds_service/fhir_double.py), never an empty result."
        ),
    )


class CaseFeedback(_Authored):
    """Feedback given earlier on a card of the rule under test, for the case's patient."""

    outcome: Literal["overridden", "accepted"] = Field(
        description="What the clinician did with the card (only overrides can snooze a rule)"
    )
    reason: Text | None = Field(
        default=None,
        description="The override reason: a code of the rule's card.overrideReasons",
    )
    at: AwareDatetime = Field(description="When (the feedback's outcomeTimestamp)")


class Expectation(_Authored):
    """What the case expects. Nothing expected means the rule must not fire."""

    cards: list[JsonObject] = Field(
        default_factory=list,
        description=(
            "Exact number of cards; each listed key must equal the card's wire JSON (nested "
            "objects by key, lists by position). [] or absent: the rule must NOT fire."
        ),
    )
    conditions: dict[str, StrictBool] = Field(
        default_factory=dict, description="Condition id → expected truth"
    )
    fhir_requests: list[Text] | None = Field(
        default=None,
        description="Exactly these relative URLs were fetched from the mock FHIR server, any order",
    )
    status: Status | None = Field(
        default=None,
        description=(
            "Expected outcome. Without it, a skipped rule fails the case; a rule that errors or "
            "runs past its budget always fails it. `shadow`: a `status: draft` rule that fired "
            "(its card is never returned; `cards` may list the card it would show)."
        ),
    )


class RuleTestCase(_Authored):
    """One hook call and what it should produce."""

    name: Text = Field(description="Unique in the file; `--run` matches `<rule-id>/<name>`")
    rule: Kebab | None = Field(default=None, description="Rule to test (default: the file's rule)")
    now: AwareDatetime | None = Field(default=None, description="Overrides the file's `now`")
    context: JsonObject | None = Field(
        default=None, description="The hook context (the hook comes from the rule)"
    )
    context_file: Text | None = Field(
        default=None,
        description="Instead of `context`: a JSON file under rules/_fixtures/, relative to the "
        "rules directory (e.g. `_fixtures/order-select-context.json`)",
    )
    prefetch: dict[str, JsonObject | None] | None = Field(
        default=None,
        description="Prefetch the client sends; an absent key is not sent, null = found nothing",
    )
    prefetch_files: dict[str, Text] = Field(
        default_factory=dict,
        description="Prefetch key → JSON file under rules/_fixtures/ (relative to the rules "
        "directory), merged with `prefetch`",
    )
    scores: dict[str, JsonObject] = Field(
        default_factory=dict,
        description="Injected risk scores by name (e.g. `cha2ds2-vasc: {value: 4}`)",
    )
    feedback: list[CaseFeedback] = Field(
        default_factory=list,
        description="Feedback given earlier on the rule's cards for this patient, e.g. "
        "`[{outcome: overridden, reason: patient-declined, at: 2026-06-01T10:00:00Z}]`: an "
        "override with a reason the rule's `suppress:` lists snoozes it (status `suppressed`)",
    )
    fhir_server: MockFhirServer | None = None
    expect: Expectation = Field(default_factory=Expectation)


class RuleTestFile(_Authored):
    """`<rule-id>.test.yaml`: the tests of one rule, beside it."""

    schema_: Literal["cds-rule-test/1"] = Field(alias="schema")
    rule: Kebab | None = Field(
        default=None, description="The rule under test; must equal the file name's stem"
    )
    now: AwareDatetime = Field(description="The frozen %now of every case (a case may override)")
    description: Text | None = None
    fixtures: dict[str, Any] = Field(
        default_factory=dict,
        description="Free-form: a place for YAML anchors (&name) that cases reuse (*name)",
    )
    cases: Annotated[list[RuleTestCase], Field(min_length=1)]


def rule_test_files(root: Path) -> list[Path]:
    """Every `*.test.yaml` under `root`, outside `_`- and `.`-prefixed directories."""
    return sorted(
        p
        for p in root.rglob("*" + TEST_SUFFIX)
        if not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )


def _jsonable(value: Any) -> Any:
    """YAML dates/timestamps as the ISO strings FHIR and CDS Hooks JSON carry."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def read_test_file(
    path: Path, rule_id: str
) -> tuple[RuleTestFile | None, Located, list[RuleIssue]]:
    """Parse and validate one test file: the model (None when it has errors), the positions of
    its values, and its problems as `path:line:col: field: message [rule_id]` issues."""
    located, errors = read_yaml(path)
    if located is None:
        issues = [RuleIssue(path, e.line, e.col, e.field, e.message, rule_id) for e in errors]
        return None, Located(None), issues
    if located.value is None:
        line, col = located.position(())
        return None, located, [RuleIssue(path, line, col, "", "the test file is empty", rule_id)]
    try:
        model = RuleTestFile.model_validate(_jsonable(located.value))
    except ValidationError as exc:
        return None, located, validation_issues(exc, path, located, rule_id)
    return model, located, []
