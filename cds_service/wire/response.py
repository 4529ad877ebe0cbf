"""The hook response: cards and system actions (CDS Hooks 2.0 "CDS Service Response").

Every invariant the specification states for a response is enforced by construction, so the
service cannot emit a non-conformant card: cds-resp-1 (at-most-one ⇒ ≤1 recommended), cds-resp-2
(delete ⇒ resourceId and no resource), cds-resp-3 (appContext only on smart links), cds-resp-4
(override reasons carry a display), cds-resp-5 (suggestion actions carry a description) and
cds-resp-6 (suggestions ⇒ selectionBehavior); plus summary < 140 characters, `create`/`update`
carrying a resource, and absolute URLs where the specification asks for them.

`uuid` is filled in for every card and suggestion, because a client sends feedback only for cards
and suggestions that have one.
"""

from __future__ import annotations

import re
import uuid as uuid_module
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictBool, StrictStr, model_validator

from cds_service.wire.base import OutboundModel
from cds_service.wire.fhir import FhirResource

__all__ = [
    "Action",
    "CDSResponse",
    "Card",
    "Coding",
    "Indicator",
    "Link",
    "OverrideReason",
    "SelectionBehavior",
    "Source",
    "Suggestion",
]

Indicator = Literal["info", "warning", "critical"]
SelectionBehavior = Literal["at-most-one", "any"]
ActionType = Literal["create", "update", "delete"]
NonEmptyStr = Annotated[StrictStr, Field(min_length=1)]


def _absolute_url(value: str) -> str:
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$", value):
        raise ValueError("must be an absolute URL")
    return value


AbsoluteUrl = Annotated[StrictStr, AfterValidator(_absolute_url)]


def _new_uuid() -> str:
    return str(uuid_module.uuid4())


class Coding(OutboundModel):
    """A code from a code system (used for `source.topic`)."""

    code: NonEmptyStr
    system: NonEmptyStr
    display: NonEmptyStr | None = None


class OverrideReason(Coding):
    """A reason a clinician may pick when overriding a card: `display` is required (cds-resp-4)."""

    display: NonEmptyStr


class Source(OutboundModel):
    """Where the guidance on a card comes from."""

    label: NonEmptyStr
    url: AbsoluteUrl | None = None
    icon: AbsoluteUrl | None = None
    topic: Coding | None = None


class Action(OutboundModel):
    """A change to a FHIR resource that a suggestion (or a system action) proposes."""

    type: ActionType
    description: NonEmptyStr | None = None
    resource: FhirResource | None = None
    resource_id: NonEmptyStr | None = None

    @model_validator(mode="after")
    def _shape_per_type(self) -> Action:
        if self.type == "create" and self.resource is None:
            raise ValueError("a 'create' action needs a resource")
        if self.type == "update" and self.resource is None:
            raise ValueError("an 'update' action needs the whole updated resource")
        if self.type == "delete" and (self.resource_id is None or self.resource is not None):
            raise ValueError("a 'delete' action needs resourceId and no resource (cds-resp-2)")
        return self


class Suggestion(OutboundModel):
    """A set of actions the clinician can accept with one click (actions are ANDed)."""

    label: NonEmptyStr
    uuid: NonEmptyStr = Field(default_factory=_new_uuid)
    is_recommended: StrictBool | None = None
    actions: list[Action] | None = None

    @model_validator(mode="after")
    def _actions_described(self) -> Suggestion:
        # cds-resp-5: every suggestion action has a description
        if any(action.description is None for action in self.actions or []):
            raise ValueError("every suggestion action needs a description (cds-resp-5)")
        return self


class Link(OutboundModel):
    """A link to a reference page (`absolute`) or to a SMART app launched in context (`smart`)."""

    label: NonEmptyStr
    url: AbsoluteUrl
    type: Literal["absolute", "smart"]
    app_context: NonEmptyStr | None = None
    autolaunchable: StrictBool | None = None

    @model_validator(mode="after")
    def _app_context_only_for_smart(self) -> Link:
        # cds-resp-3
        if self.app_context is not None and self.type != "smart":
            raise ValueError("appContext is only allowed on 'smart' links (cds-resp-3)")
        return self


class Card(OutboundModel):
    """One piece of guidance shown to the clinician."""

    uuid: NonEmptyStr = Field(default_factory=_new_uuid)
    summary: Annotated[StrictStr, Field(min_length=1, max_length=139)]
    detail: NonEmptyStr | None = None
    indicator: Indicator
    source: Source
    suggestions: list[Suggestion] | None = None
    selection_behavior: SelectionBehavior | None = None
    override_reasons: list[OverrideReason] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _suggestion_invariants(self) -> Card:
        if self.suggestions:
            # cds-resp-6
            if self.selection_behavior is None:
                raise ValueError("cards with suggestions need selectionBehavior (cds-resp-6)")
            # cds-resp-1
            recommended = sum(1 for s in self.suggestions if s.is_recommended)
            if self.selection_behavior == "at-most-one" and recommended > 1:
                raise ValueError(
                    "at most one suggestion may be recommended with 'at-most-one' (cds-resp-1)"
                )
        return self


class CDSResponse(OutboundModel):
    """The body of a 200 answer to a hook call. `cards` is always present, even when empty."""

    cards: list[Card] = Field(default_factory=list)
    system_actions: list[Action] | None = None

    def wire(self) -> dict[str, Any]:
        body = super().wire()
        body.setdefault("cards", [])  # the one empty member the specification requires
        return body
