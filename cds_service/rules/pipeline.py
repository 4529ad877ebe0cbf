"""One evaluation pipeline for every path that turns a hook call into cards.

    validate the call → resolve prefetch (a DataSource) → the service evaluates:
    index the data → risk scores (a ScoreSource) → rules (lazy) → cards

The HTTP route (`api/hooks.py`), `rules test`, `rules explain`, the benchmarks and population
jobs all call `evaluate_call`; what differs between them is only what is injected:

- the data source: `FhirSource` fetches what the EHR did not prefetch from its FHIR server (an
  httpx client whose transport may be an in-memory FHIR double); `OfflineSource` fetches nothing
  (keys the request lacks are unavailable);
- the clock (`now`);
- the score source (`cds_service.scores.sources`): the cache when serving, computed otherwise;
- the suppression source (`cds_service.services.suppression`): the overrides that snooze a rule
  for the patient, from the feedback store when serving, from a test case or `explain`'s options.

A rule service's evaluate function (`rules/service.py`) returns, beside its cards, a
`RulesTrace`: every rule's lazy outcome (status, bindings, conditions, card), which is the
verdict in every path. `display_outcomes` evaluates the same rules eagerly, for display only
(`rules explain`, a test's expected conditions).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from cds_service import tracing
from cds_service.exceptions import Issue, PreconditionFailed, RequestError
from cds_service.jsondepth import DEFAULT_MAX_DEPTH
from cds_service.prefetch.batch import BatchSupport
from cds_service.prefetch.gaps import template_type
from cds_service.prefetch.resolve import resolve_prefetch
from cds_service.prefetch.templates import render_template
from cds_service.prefetch.types import PrefetchOutcome, PrefetchSpec
from cds_service.rules.compiled import CompiledRule, score_variable
from cds_service.rules.engine import RequestData, RuleOutcome, evaluate_rule
from cds_service.scores.fhir_inputs import RECORD_TYPES, PatientRecord, load_failure
from cds_service.scores.provider import SCORE_PREFETCH
from cds_service.scores.sources import ScoreSource
from cds_service.services.definition import HookCall, ServiceDefinition, ServiceResult
from cds_service.services.suppression import NO_OVERRIDES, SuppressionSource
from cds_service.wire.contexts import HookContext, hook_spec
from cds_service.wire.outcome import issues_from_validation
from cds_service.wire.request import HookRequest

__all__ = [
    "CallResult",
    "DataSource",
    "Display",
    "FhirSource",
    "OfflineSource",
    "ResolvedSource",
    "RulesTrace",
    "check_hook",
    "display_outcomes",
    "evaluate_call",
    "score_record",
    "validate_context",
]


class DataSource(Protocol):
    """Resolves a call's prefetch: what the EHR sent, and what it did not, from elsewhere."""

    async def resolve(
        self,
        request: HookRequest,
        specs: Mapping[str, PrefetchSpec],
        *,
        deadline_seconds: float,
    ) -> dict[str, PrefetchOutcome]: ...


@dataclass(slots=True)
class FhirSource:
    """Fetches missing prefetch from the request's `fhirServer` with the EHR's token.

    `refused` (the SSRF guard's reason) forbids fetching; `slots` bounds the fetches in flight
    across the process; `batch` (which servers take FHIR batches) lets several missing keys go
    in one request."""

    client: httpx.AsyncClient
    max_pages: int = 20
    slots: asyncio.Semaphore | None = None
    refused: str | None = None
    batch: BatchSupport | None = None
    # Told the refusal when a key had to be fetched (not when the EHR sent everything).
    on_refusal: Callable[[str], None] | None = None
    # The deepest nesting accepted in the server's answers (`CDS_MAX_JSON_DEPTH` when serving).
    max_depth: int = DEFAULT_MAX_DEPTH

    async def resolve(
        self,
        request: HookRequest,
        specs: Mapping[str, PrefetchSpec],
        *,
        deadline_seconds: float,
    ) -> dict[str, PrefetchOutcome]:
        if self.refused is not None and self.on_refusal is not None:
            sent = request.prefetch or {}
            if any(
                key not in sent and render_template(spec.template, request.context) is not None
                for key, spec in specs.items()
            ):
                self.on_refusal(self.refused)
        return await resolve_prefetch(
            request,
            specs,
            self.client,
            deadline_seconds=deadline_seconds,
            max_pages=self.max_pages,
            fetch_refused=self.refused,
            slots=self.slots,
            batch=self.batch,
            max_depth=self.max_depth,
        )


class OfflineSource:
    """Fetches nothing: keys the request does not carry are unavailable."""

    REASON = "this evaluation does not fetch from the FHIR server"

    async def resolve(
        self,
        request: HookRequest,
        specs: Mapping[str, PrefetchSpec],
        *,
        deadline_seconds: float,
    ) -> dict[str, PrefetchOutcome]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(_refuse)) as client:
            return await resolve_prefetch(
                request,
                specs,
                client,
                deadline_seconds=deadline_seconds,
                max_pages=1,
                fetch_refused=self.REASON,
            )


@dataclass(slots=True)
class ResolvedSource:
    """Prefetch resolved beforehand (a benchmark's timed region, a replay of a recorded call):
    each key the service asks for is answered from `outcomes`, unavailable when absent."""

    outcomes: Mapping[str, PrefetchOutcome]

    async def resolve(
        self,
        request: HookRequest,
        specs: Mapping[str, PrefetchSpec],
        *,
        deadline_seconds: float,
    ) -> dict[str, PrefetchOutcome]:
        return {
            key: self.outcomes.get(key)
            or PrefetchOutcome(key, None, "unavailable", "not resolved beforehand")
            for key in specs
        }


def _refuse(_: httpx.Request) -> httpx.Response:  # never reached: fetching is refused
    return httpx.Response(503)


def _unsupported(message: str) -> RequestError:
    """A 400 naming the `hook` field as not supported."""
    return RequestError(message, issues=[Issue(message, "hook", "not-supported")])


def check_hook(service: ServiceDefinition, hook: str) -> None:
    """400 unless `hook` is a known hook that the service serves."""
    if hook_spec(hook) is None:
        raise _unsupported(
            f"hook: '{hook}' is neither a hook of the HL7 hook library "
            "nor a reverse-domain hook such as 'org.example.my-hook'"
        )
    if hook not in service.hooks:
        served = ", ".join(service.hooks)
        raise _unsupported(
            f"hook: service '{service.id}' does not serve '{hook}' (it serves {served})"
        )


def validate_context(request: HookRequest) -> HookContext:
    """The call's context, validated against its hook's context model (400 when invalid)."""
    spec = hook_spec(request.hook)
    if spec is None:
        raise _unsupported(f"hook: '{request.hook}' is not a known hook")
    try:
        return spec.context.model_validate(request.context)
    except ValidationError as exc:
        issues = issues_from_validation(exc, prefix="context")
        raise RequestError("invalid context", issues=issues) from None


@dataclass(slots=True)
class RulesTrace:
    """What a rule service did on one call: the call's data and each rule's lazy outcome."""

    rules: list[CompiledRule]
    data: RequestData
    outcomes: list[RuleOutcome]
    scores: ScoreSource
    tenant: str = "default"


@dataclass(slots=True)
class CallResult:
    """One evaluated call: its validated context, resolved prefetch and the service's result."""

    context: HookContext
    prefetch: dict[str, PrefetchOutcome]
    result: ServiceResult
    fetch_seconds: float = 0.0

    @property
    def unevaluated(self) -> list[Issue]:
        """Why no rule could be evaluated (a strict call answered 412 with these instead)."""
        return self.result.unevaluated

    @property
    def trace(self) -> RulesTrace | None:
        """The rule outcomes, when the service is a rule service."""
        trace = self.result.trace
        return trace if isinstance(trace, RulesTrace) else None


async def evaluate_call(
    service: ServiceDefinition,
    request: HookRequest,
    source: DataSource,
    *,
    now: datetime,
    budget_seconds: float,
    prefetch_deadline_seconds: float,
    base_url: str = "http://127.0.0.1:8080",
    tenant: str = "default",
    started: float | None = None,
    strict: bool = True,
    suppression: SuppressionSource = NO_OVERRIDES,
) -> CallResult:
    """Evaluate one call of `service`, as the HTTP route does for an EHR.

    One budget covers the call from `started` (a `time.perf_counter()` value; now by default):
    fetching missing prefetch may use all but its last quarter (and at most
    `prefetch_deadline_seconds`); the service gets the rest. With `strict` (serving), a rule
    service none of whose rules could be evaluated for want of data answers 412; otherwise the
    result carries those issues in `unevaluated` (rule tests and `explain` report the outcomes).
    `suppression` gives the overrides that snooze a rule with a `suppress:` block.
    """
    began = time.perf_counter() if started is None else started
    check_hook(service, request.hook)
    context = validate_context(request)
    fetch_window = min(prefetch_deadline_seconds, budget_seconds * 0.75)
    fetch_window = max(fetch_window - (time.perf_counter() - began), 0.01)
    specs = service.prefetch_for(request.hook)
    sent = request.prefetch or {}
    # Only keys the EHR did not send can be skipped: with all of them sent, the cache is not asked.
    if service.skip_fetching is not None and any(k not in sent for k in specs):
        skip = await service.skip_fetching(request, request.hook, tenant)
        specs = {k: v for k, v in specs.items() if k in sent or k not in skip}
    fetch_started = time.perf_counter()
    with tracing.span("cds.prefetch") as span:
        prefetch = await source.resolve(request, specs, deadline_seconds=fetch_window)
        if span.is_recording():  # (the count is not made while tracing is off)
            span.set_attribute("cds.prefetch.keys", len(specs))
            fetched = sum(1 for o in prefetch.values() if o.source == "fetched")
            span.set_attribute("cds.prefetch.fetched", fetched)
    fetch_seconds = time.perf_counter() - fetch_started
    call = HookCall(
        request,
        context,
        prefetch,
        now,
        base_url,
        deadline=began + budget_seconds,
        tenant=tenant,
        suppression=suppression,
    )
    result = await service.evaluate(call)
    if strict and result.unevaluated:
        raise PreconditionFailed("no rule could be evaluated", issues=list(result.unevaluated))
    return CallResult(context, prefetch, result, fetch_seconds)


def score_gaps(data: RequestData) -> dict[str, str]:
    """What the scores cannot know on this call: for each score prefetch key that failed to load
    (or was not fetched), its resource type and why ("Conditions could not be loaded (fetch
    failed: ReadTimeout)")."""
    gaps: dict[str, str] = {}
    for key, template in SCORE_PREFETCH.items():
        why = data.failed.get(key)
        resource_type = template_type(template)
        if why is None or resource_type is None:
            continue
        partial = data.prefetch.get(key) is not None  # obtained in part
        gaps[resource_type] = load_failure(resource_type, f"{key}: {why}", partial=partial)
    return gaps


def score_record(data: RequestData) -> PatientRecord:
    """The record every score reads: all of the call's resources, context resources included,
    as of the call's `now`, with what failed to load (`score_gaps`). The same in every path."""
    assert data.now is not None
    return PatientRecord.grouped(data.index.by_type(RECORD_TYPES), data.now, score_gaps(data))


@dataclass(slots=True)
class Display:
    """The eager pass over a call's data: each rule's outcome, and the scores it was given."""

    outcomes: list[RuleOutcome]
    scores: dict[str, Any]  # by variable name (`score_variable`)


async def display_outcomes(trace: RulesTrace, budget_seconds: float = 5.0) -> Display:
    """Each rule of the trace evaluated eagerly (every binding, every condition), for display.

    The verdict stays the lazy one in `trace.outcomes`: eager evaluation may report an error in a
    binding production never computes. Every score the rules declare is provided first (the ones
    the lazy evaluation already obtained are reused)."""
    data = RequestData(
        trace.data.context,
        trace.data.prefetch,
        trace.data.unavailable,
        now=trace.data.now,
        base_url=trace.data.base_url,
        failed=trace.data.failed,
        key_types=trace.data.key_types,
        optional=trace.data.optional,
    )
    wanted = sorted({name for rule in trace.rules for name in rule.rule.scores})
    scores = dict(trace.data.scores)  # by variable name
    if wanted:
        missing = [name for name in wanted if score_variable(name) not in scores]
        if missing:
            computed = await trace.scores.scores(
                missing,
                score_record(data),
                patient_id=str(data.context.get("patientId", "")),
                tenant=trace.tenant,
            )
            scores.update({score_variable(name): value for name, value in computed.items()})
        data.provide_scores(scores)
    outcomes = [
        evaluate_rule(rule, data, budget_seconds=budget_seconds, eager=True) for rule in trace.rules
    ]
    return Display(outcomes, scores)
