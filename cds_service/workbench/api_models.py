"""The workbench API's bodies and answers (`/workbench/api/...`, in the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cds_service.workbench.drafts import MAX_RULE_CHARS, MAX_TESTS_CHARS

__all__ = [
    "DraftBody",
    "EvaluateBody",
    "OverrideReasonCount",
    "RuleDetail",
    "RuleFiguresModel",
    "RulesResponse",
    "SimulationModel",
    "TimelineDay",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DraftBody(_Body):
    """A draft rule (YAML text) and, optionally, its test file (YAML text)."""

    rule: str = Field(max_length=MAX_RULE_CHARS, description="the rule file's YAML")
    tests: str | None = Field(
        default=None, max_length=MAX_TESTS_CHARS, description="the test file's YAML"
    )


class EvaluateBody(DraftBody):
    """Evaluate the draft on a sample patient (the call `rules simulate` makes for its hook)
    or on a pasted CDS Hooks request (nothing fetched: keys it lacks are unavailable)."""

    patient: str | None = Field(default=None, min_length=1, max_length=256)
    request: dict[str, Any] | None = None
    at: datetime | None = Field(
        default=None, description="when the call happens (default: the patient's last encounter)"
    )

    @model_validator(mode="after")
    def _one_input(self) -> EvaluateBody:
        if (self.patient is None) == (self.request is None):
            raise ValueError("give exactly one of 'patient' and 'request'")
        return self


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OverrideReasonCount(_Out):
    code: str
    display: str
    count: int


class RuleFiguresModel(_Out):
    rule: str
    title: str
    service: str
    hook: str
    version: str = Field(description="the version served now; '-' when no longer served")
    status: str = Field(description="draft, active, retired (no longer served)")
    versionsSeen: list[str] = Field(description="versions with data in the window")
    calls: int = Field(description="hook calls to the service on the rule's hook (200)")
    fired: int = Field(description="cards issued plus shadow cards (draft rules)")
    fireRate: float | None
    cardRate: float | None = Field(description="calls of the service and hook with any card")
    cards: int
    shadow: int
    suppressed: int
    skipped: int
    errors: int = Field(description="error and timeout outcomes")
    accepted: int
    overridden: int
    ignored: int = Field(description="cards issued without any feedback")
    acceptanceRate: float | None
    overrideReasons: list[OverrideReasonCount]


class RulesResponse(_Out):
    since: datetime
    until: datetime
    days: int
    rules: list[RuleFiguresModel]


class TimelineDay(_Out):
    day: str
    cards: int
    accepted: int
    overridden: int


class SimulationModel(_Out):
    at: str
    rule: str
    version: str
    service: str
    hook: str
    source: str
    patients: int
    calls: int
    fired: int
    fireRate: float
    cardRate: float
    statuses: dict[str, int]
    examplePatients: list[str] = Field(description="authors only; empty for readers")
    errors: list[str]


class RuleDetail(_Out):
    since: datetime
    until: datetime
    days: int
    figures: RuleFiguresModel
    timeline: list[TimelineDay]
    simulations: list[SimulationModel]
    source: str | None = Field(description="the rule's YAML")
    tests: str | None = Field(description="its test file's YAML")
