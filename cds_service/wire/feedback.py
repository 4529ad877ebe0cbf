"""Feedback: `POST {baseUrl}/cds-services/{id}/feedback` (CDS Hooks 2.0 "Feedback").

Validated per the specification and the 3.0-ballot invariants cds-fb-1 (outcome is `accepted` or
`overridden`), cds-fb-2 (`accepted` ⇒ `acceptedSuggestions`) and cds-fb-3 (an `overrideReason`
carries a `reason`, a `userComment` or both). Lenient where real clients are sloppy: the CDS Hooks
Sandbox sends `overrideReason.reason` without `display`, and a 2020 draft put `code`/`system`
directly under `overrideReason`; both are accepted and normalised.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr, field_validator, model_validator

from cds_service.wire.base import InboundModel, NoNul

__all__ = ["AcceptedSuggestion", "Feedback", "FeedbackBatch", "OverrideReasonFeedback"]

Text = Annotated[StrictStr, Field(min_length=1, max_length=256), NoNul]


class AcceptedSuggestion(InboundModel):
    """`{"id": suggestion.uuid}`."""

    id: Text


class ReasonCoding(InboundModel):
    """The override reason the clinician picked; `display` is optional here (see module doc)."""

    code: Text
    system: Annotated[StrictStr, Field(min_length=1, max_length=1024), NoNul]
    display: Annotated[StrictStr, Field(max_length=1024), NoNul] | None = None


class OverrideReasonFeedback(InboundModel):
    """Why the card was overridden: a coded reason, a free-text comment, or both (cds-fb-3)."""

    reason: ReasonCoding | None = None
    user_comment: Annotated[StrictStr, Field(max_length=4096), NoNul] | None = None

    @model_validator(mode="before")
    @classmethod
    def _flat_coding(cls, data: Any) -> Any:
        # A draft shape put the coding's members directly under overrideReason.
        if isinstance(data, dict) and "reason" not in data and "code" in data:
            coding = {k: data[k] for k in ("code", "system", "display") if k in data}
            rest = {k: v for k, v in data.items() if k not in coding}
            return {**rest, "reason": coding}
        return data

    @model_validator(mode="after")
    def _reason_or_comment(self) -> OverrideReasonFeedback:
        if self.reason is None and not self.user_comment:
            raise ValueError("overrideReason needs a reason, a userComment or both (cds-fb-3)")
        return self


class Feedback(InboundModel):
    """What the clinician did with one card."""

    card: Text
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: Annotated[list[AcceptedSuggestion], Field(max_length=100)] | None = None
    override_reason: OverrideReasonFeedback | None = None
    outcome_timestamp: datetime
    extension: dict[str, Any] | None = None

    @field_validator("outcome_timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        # RFC 3339 in UTC per the specification; a timestamp without an offset is read as UTC.
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _outcome_shape(self) -> Feedback:
        if self.outcome == "accepted":
            if not self.accepted_suggestions:
                raise ValueError(
                    "acceptedSuggestions is required when outcome is 'accepted' (cds-fb-2)"
                )
            if self.override_reason is not None:
                raise ValueError("overrideReason is only allowed when outcome is 'overridden'")
        elif self.accepted_suggestions:
            raise ValueError("acceptedSuggestions is only allowed when outcome is 'accepted'")
        return self


class FeedbackBatch(InboundModel):
    """`{"feedback": [...]}`: one or more cards, possibly from several hook instances."""

    feedback: Annotated[list[Feedback], Field(min_length=1, max_length=1000)]
