"""What a CDS service is: metadata, prefetch needs per key, and an evaluate function per hook.

The registry holds these; the rule engine builds them from YAML rules, and the built-in services
build them in Python. The HTTP layer never looks inside `evaluate`.

Example::

    async def evaluate(call: HookCall) -> ServiceResult:
        patient = call.data("patient")
        return ServiceResult(cards=[...])

    ServiceDefinition(
        id="greeter", title="Greeter", description="Says hello",
        hooks=("patient-view",),
        prefetch={"patient": PrefetchSpec("Patient/{{context.patientId}}", required=True)},
        evaluate=evaluate,
    )
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.exceptions import Issue, PreconditionFailed
from cds_service.prefetch.types import PrefetchOutcome, PrefetchSpec
from cds_service.services.suppression import NO_OVERRIDES, SuppressionSource
from cds_service.wire.contexts import HookContext
from cds_service.wire.request import HookRequest
from cds_service.wire.response import Action, Card

__all__ = ["CardOrigin", "HookCall", "RuleStatus", "ServiceDefinition", "ServiceResult"]


@dataclass(frozen=True, slots=True)
class HookCall:
    """Everything a service's evaluate function may read."""

    request: HookRequest
    context: HookContext
    prefetch: Mapping[str, PrefetchOutcome]
    now: datetime
    base_url: str = "http://127.0.0.1:8080"  # our own external URL, for links back to us
    deadline: float = float("inf")  # time.perf_counter() value by which the call must answer
    tenant: str = "default"  # the calling tenant's id (keys cached data per organisation)
    # The overrides that may snooze a rule for the patient (the calling tenant's, when serving).
    suppression: SuppressionSource = NO_OVERRIDES

    @property
    def hook(self) -> str:
        return self.request.hook

    @property
    def raw_context(self) -> dict[str, Any]:
        return self.request.context

    def data(self, key: str) -> dict[str, Any] | None:
        """The resource or Bundle for a prefetch key; None when empty or unobtainable."""
        outcome = self.prefetch.get(key)
        return outcome.data if outcome is not None else None

    def require(self, key: str) -> dict[str, Any] | None:
        """The data of a key the service cannot decide without (None when known empty).

        When it could be obtained neither from prefetch nor from the FHIR server, the call
        answers 412 naming the key: "not checked" must not look like "checked, nothing found".
        """
        outcome = self.prefetch.get(key)
        if outcome is not None and outcome.available:
            return outcome.data
        why = outcome.detail if outcome is not None and outcome.detail else None
        message = f"{key}: could be obtained neither from prefetch nor from the FHIR server"
        issue = Issue(f"{message} ({why})" if why else message, f"prefetch.{key}", "incomplete")
        raise PreconditionFailed("required data could not be obtained", issues=[issue])


@dataclass(frozen=True, slots=True)
class CardOrigin:
    """What produced a card: a rule (its id and version), or a built-in service (its id, and the
    package version). Recorded with the card's uuid when it is issued, so feedback on the card
    is feedback on that rule."""

    rule_id: str
    rule_version: str


@dataclass(frozen=True, slots=True)
class RuleStatus:
    """How one rule ended on a call, for the audit trail: `fired`, `shadow` (a draft rule that
    would have fired), `suppressed`, `skipped`, `error` or `timeout` (silent rules are not
    listed)."""

    rule_id: str
    rule_version: str
    status: str


@dataclass(frozen=True, slots=True)
class ServiceResult:
    """What a service returns for one call."""

    cards: list[Card] = field(default_factory=list)
    # Card uuid → what produced it (rule services); a card without one is the service's own.
    origins: Mapping[str, CardOrigin] = field(default_factory=dict)
    # Rule services: each rule that did not stay silent, and how it ended (the audit counts them).
    rule_statuses: tuple[RuleStatus, ...] = ()
    system_actions: list[Action] = field(default_factory=list)
    # Why the call could not be evaluated at all for want of data: the pipeline answers 412
    # with these issues when serving (a service may also raise PreconditionFailed itself).
    unevaluated: list[Issue] = field(default_factory=list)
    # What the service did, for the paths that show it (rule services: a rules.pipeline
    # RulesTrace with every rule's outcome); never sent to the EHR.
    trace: object | None = None


Evaluate = Callable[[HookCall], Awaitable[ServiceResult]]


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """A CDS service: one id, served on one or more hooks."""

    id: str
    title: str
    description: str
    hooks: tuple[str, ...]
    evaluate: Evaluate
    prefetch: Mapping[str, PrefetchSpec] = field(default_factory=dict)
    usage_requirements: str | None = None
    prefetch_by_hook: Mapping[str, tuple[str, ...]] | None = None
    # Optionally drop keys that need not be fetched for this call (e.g. cached scores' data).
    skip_fetching: Callable[[HookRequest, str, str], Awaitable[frozenset[str]]] | None = None

    def prefetch_for(self, hook: str) -> dict[str, PrefetchSpec]:
        """The prefetch keys this service needs on `hook` (all keys unless narrowed per hook)."""
        if self.prefetch_by_hook is None or hook not in self.prefetch_by_hook:
            return dict(self.prefetch)
        return {k: self.prefetch[k] for k in self.prefetch_by_hook[hook]}
