"""Rules as CDS services: grouping, prefetch union, one call evaluating every rule of a hook.

`services_from_rules` turns a RuleSet into ServiceDefinitions for the registry. A call evaluates
the service's rules for the call's hook; `status: draft` rules run in shadow mode (their cards are
logged and counted, never returned nor recorded as issued); a rule that fails or runs long is
skipped and counted; a rule an override snoozes for the patient (`suppress:`, rules/snooze.py) is
`suppressed`: counted, no card. When every rule of the call had to be skipped because its data
could not be obtained, the call answers 412, as the specification asks. The result says which
rule made which card (`origins`) and how each rule that did not stay silent ended
(`rule_statuses`), for the audit trail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cds_service.exceptions import Issue
from cds_service.prefetch.gaps import failed_keys, template_type
from cds_service.prefetch.types import PrefetchOutcome, PrefetchSpec
from cds_service.rules.compiled import CompiledRule, score_variable
from cds_service.rules.engine import RequestData, RuleOutcome, ScoresNeeded, evaluate_rule
from cds_service.rules.narrowing import narrowed_templates
from cds_service.rules.pipeline import RulesTrace, score_record
from cds_service.rules.ruleset import RuleSet
from cds_service.rules.snooze import apply_snoozes
from cds_service.scores.provider import SCORE_PREFETCH
from cds_service.scores.sources import ScoreSource
from cds_service.services.definition import (
    CardOrigin,
    HookCall,
    RuleStatus,
    ServiceDefinition,
    ServiceResult,
)
from cds_service.wire.request import HookRequest

__all__ = [
    "RuleStats",
    "counted_status",
    "evaluate_hook_rules",
    "evaluate_with_scores",
    "prefetch_specs",
    "request_data",
    "rule_service",
    "services_from_rules",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RuleStats:
    """Counters per rule: what operators and authors need to judge a rule (card rate)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, outcome: RuleOutcome, shadow: bool) -> str:
        """Count the outcome; the status it is counted under (`counted_status`)."""
        per_rule = self.counts.setdefault(outcome.rule_id, {})
        key = counted_status(outcome, shadow)
        per_rule[key] = per_rule.get(key, 0) + 1
        per_rule["calls"] = per_rule.get("calls", 0) + 1
        return key


def counted_status(outcome: RuleOutcome, shadow: bool) -> str:
    """The status an outcome is counted (and audited) under: `shadow` for a draft rule that
    fired, the outcome's own status otherwise."""
    return "shadow" if shadow and outcome.status == "fired" else outcome.status


def optional_keys(rules: Sequence[CompiledRule]) -> frozenset[str]:
    """The keys every rule that declares them lists under `optionalPrefetch`."""
    declared: dict[str, bool] = {}
    for rule in rules:
        for key in rule.rule.prefetch:
            optional = key in rule.rule.optionalPrefetch
            declared[key] = declared.get(key, True) and optional
    return frozenset(key for key, optional in declared.items() if optional)


def prefetch_specs(rules: Sequence[CompiledRule]) -> dict[str, PrefetchSpec]:
    """The union of the rules' prefetch, plus what the risk scores read when any rule uses one;
    Observation searches narrowed to the codes the rules select (rules/narrowing.py); searches
    are read in full (all pages)."""
    templates: dict[str, str] = {}
    for rule in rules:
        for key, template in rule.rule.prefetch.items():
            templates.setdefault(key, template)
    if any(rule.rule.scores for rule in rules):
        for key, template in SCORE_PREFETCH.items():
            templates.setdefault(key, template)
    return {
        key: PrefetchSpec(template, required=False, all_pages="?" in template)
        for key, template in narrowed_templates(templates, rules).items()
    }


def request_data(
    context: dict[str, Any],
    prefetch: Mapping[str, PrefetchOutcome],
    now: datetime,
    base_url: str = "http://127.0.0.1:8080",
    *,
    templates: Mapping[str, str] | None = None,
    optional: frozenset[str] = frozenset(),
) -> RequestData:
    """Assemble one call's data (scores are provided later, to the rules that reach them).

    `templates` (key → prefetch template) are the keys the call asked for: one it did not
    resolve (not fetched because cached scores were expected) has failed to load too, and the
    templates give each key's resource type. `optional`: keys every rule declaring lists as
    `optionalPrefetch`."""
    values = {k: o.data for k, o in prefetch.items() if o.available}
    unavailable = frozenset(k for k, o in prefetch.items() if not o.available)
    failed = failed_keys(prefetch)
    key_types: dict[str, str] = {}
    for key, template in (templates or {}).items():
        if key not in prefetch:
            failed[key] = "not fetched: the cached scores were expected to serve"
        if (resource_type := template_type(template)) is not None:
            key_types[key] = resource_type
    return RequestData(
        context,
        values,
        unavailable,
        now=now,
        base_url=base_url,
        failed=failed,
        key_types=key_types,
        optional=optional,
    )


def _evaluate(
    rules: Sequence[CompiledRule],
    data: RequestData,
    budget_seconds: float,
    partial: dict[str, RuleOutcome] | None = None,
) -> list[RuleOutcome | None]:
    """Evaluate each rule with an equal share of the budget that remains, with None for each
    rule that stopped at `%scores` (ScoresNeeded); its
    partial outcome goes into `partial` (and is resumed from there when given one)."""
    outcomes: list[RuleOutcome | None] = []
    started = time.perf_counter()
    for position, rule in enumerate(rules):
        remaining = budget_seconds - (time.perf_counter() - started)
        share = max(remaining / (len(rules) - position), 0.0)
        resume = partial.get(rule.id) if partial is not None else None
        try:
            outcomes.append(evaluate_rule(rule, data, budget_seconds=share, resume=resume))
        except ScoresNeeded as stopped:
            if partial is not None and stopped.partial is not None:
                partial[rule.id] = stopped.partial
            outcomes.append(None)
    return outcomes


async def evaluate_with_scores(
    rules: Sequence[CompiledRule],
    data: RequestData,
    provide: Callable[[Sequence[CompiledRule]], Awaitable[dict[str, Any]]],
    *,
    budget_seconds: float,
) -> list[RuleOutcome]:
    """Evaluate the rules, computing risk scores only for the rules that reach `%scores`.

    Most calls rule most patients out before a score is read (not 40-75, no atrial
    fibrillation, ...): those rules never wait for a score, and when none reads one, none is
    computed. The rules that do reach `%scores` are evaluated again once the scores they
    declare are provided (`provide`, given those rules), resuming with the bindings computed
    before the stop.
    """
    started = time.perf_counter()
    data.scores_pending = any(rule.rule.scores for rule in rules)
    partial: dict[str, RuleOutcome] = {}
    outcomes = _evaluate(rules, data, budget_seconds, partial)
    waiting = [i for i, outcome in enumerate(outcomes) if outcome is None]
    if waiting:
        again = [rules[i] for i in waiting]
        provided = await provide(again)
        data.provide_scores({score_variable(name): value for name, value in provided.items()})
        remaining = max(budget_seconds - (time.perf_counter() - started), 0.0)
        resumed = _evaluate(again, data, remaining, partial)
        for i, outcome in zip(waiting, resumed, strict=True):
            outcomes[i] = outcome
    data.scores_pending = False
    return [o for o in outcomes if o is not None]


async def evaluate_hook_rules(
    rules: Sequence[CompiledRule],
    call: HookCall,
    scores: ScoreSource,
    *,
    budget_seconds: float,
    templates: Mapping[str, str] | None = None,
    optional: frozenset[str] | None = None,
) -> RulesTrace:
    """Index the call's data, then evaluate the rules lazily, computing the scores (from
    `scores`, over the one record every path gives them) only for the rules that reach them;
    then snooze the fired rules an override of the patient's suppresses (`call.suppression`).
    `templates`: the prefetch the call asked for, `optional` the keys optional for every rule
    declaring them (`request_data`; computed from `rules` when not given)."""
    data = request_data(
        call.raw_context,
        call.prefetch,
        call.now,
        call.base_url,
        templates=templates,
        optional=optional_keys(rules) if optional is None else optional,
    )
    budget = min(budget_seconds, max(call.deadline - time.perf_counter(), 0.05))
    patient = str(call.raw_context.get("patientId", ""))

    async def provide(needing: Sequence[CompiledRule]) -> dict[str, Any]:
        names = sorted({name for rule in needing for name in rule.rule.scores})
        record = score_record(data)  # with what failed to load: unknown, never absent
        return await scores.scores(names, record, patient_id=patient, tenant=call.tenant)

    outcomes = await evaluate_with_scores(rules, data, provide, budget_seconds=budget)
    await apply_snoozes(
        rules,
        outcomes,
        call.suppression,
        patient_id=patient or None,
        now=call.now,
        deadline=call.deadline,
    )
    return RulesTrace(list(rules), data, outcomes, scores, call.tenant)


def _service(
    service_id: str,
    ruleset: RuleSet,
    scores: ScoreSource,
    stats: RuleStats,
    budget_seconds: float,
    rules: Sequence[CompiledRule] | None = None,
) -> ServiceDefinition:
    entry = ruleset.services[service_id]
    rules = ruleset.rules_of(service_id) if rules is None else rules
    by_hook: dict[str, list[CompiledRule]] = {}
    for rule in rules:
        by_hook.setdefault(rule.rule.hook, []).append(rule)

    async def evaluate(call: HookCall) -> ServiceResult:
        hook_rules = by_hook.get(call.hook, [])
        trace = await evaluate_hook_rules(
            hook_rules,
            call,
            scores,
            budget_seconds=budget_seconds,
            templates=templates_by_hook.get(call.hook),
            optional=optional_by_hook.get(call.hook),
        )
        cards = []
        origins: dict[str, CardOrigin] = {}
        statuses: list[RuleStatus] = []
        for rule, outcome in zip(hook_rules, trace.outcomes, strict=True):
            shadow = rule.rule.status == "draft"
            status = stats.add(outcome, shadow)
            if status != "silent":
                statuses.append(RuleStatus(rule.id, str(rule.rule.version), status))
            if outcome.card is not None:
                if shadow:
                    log.info("shadow rule %s would have shown a card", rule.id)
                else:
                    cards.append(outcome.card)
                    origins[outcome.card.uuid] = CardOrigin(rule.id, str(rule.rule.version))
        skipped = [o for o in trace.outcomes if o.status == "skipped"]
        unevaluated = []
        if hook_rules and len(skipped) == len(trace.outcomes):
            unevaluated = _unavailable_keys(skipped)
        return ServiceResult(
            cards=cards,
            origins=origins,
            rule_statuses=tuple(statuses),
            unevaluated=unevaluated,
            trace=trace,
        )

    templates_by_hook = {
        hook: {key: spec.template for key, spec in prefetch_specs(hook_rules).items()}
        for hook, hook_rules in by_hook.items()
    }
    prefetch_by_hook = {hook: tuple(sorted(keys)) for hook, keys in templates_by_hook.items()}
    optional_by_hook = {hook: optional_keys(hook_rules) for hook, hook_rules in by_hook.items()}
    score_keys = frozenset(SCORE_PREFETCH) - {k for r in rules for k in r.rule.prefetch}

    async def skip_fetching(request: HookRequest, hook: str, tenant: str) -> frozenset[str]:
        """Cached scores are read first: when every score of the hook has a cached result for
        the patient, the data only the scores read is not fetched (what the EHR sent is used)."""
        names = sorted({n for r in by_hook.get(hook, []) for n in r.rule.scores})
        patient = request.context.get("patientId")
        if not names or not isinstance(patient, str):
            return frozenset()
        cached = await scores.cached(names, patient_id=patient, tenant=tenant)
        return score_keys if cached else frozenset()

    return ServiceDefinition(
        id=service_id,
        title=entry.title,
        description=entry.description,
        hooks=tuple(sorted(by_hook)),
        evaluate=evaluate,
        prefetch=prefetch_specs(rules),
        usage_requirements=entry.usageRequirements,
        prefetch_by_hook=prefetch_by_hook,
        skip_fetching=skip_fetching,
    )


def services_from_rules(
    ruleset: RuleSet,
    *,
    scores: ScoreSource,
    stats: RuleStats,
    budget_seconds: float = 1.0,
) -> list[ServiceDefinition]:
    """One ServiceDefinition per service that has live rules."""
    return [
        _service(service_id, ruleset, scores, stats, budget_seconds)
        for service_id in sorted(ruleset.services)
        if ruleset.rules_of(service_id)
    ]


def _unavailable_keys(skipped: list[RuleOutcome]) -> list[Issue]:
    """One issue per prefetch key that kept rules from deciding, naming the key and its rules."""
    needed_by: dict[str, list[str]] = {}
    for outcome in skipped:
        for key in outcome.missing:
            needed_by.setdefault(key, []).append(outcome.rule_id)
    return [
        Issue(
            f"{key}: could be obtained neither from prefetch nor from the FHIR server "
            f"(needed by {', '.join(rules)})",
            f"prefetch.{key}",
            "incomplete",
        )
        for key, rules in sorted(needed_by.items())
    ]


def rule_service(
    rule: CompiledRule,
    ruleset: RuleSet,
    *,
    scores: ScoreSource,
    budget_seconds: float = 1.0,
    stats: RuleStats | None = None,
) -> ServiceDefinition:
    """The service a rule belongs to, holding that one rule: how a rule test or `rules
    explain` calls it (its prefetch is the rule's own, as the rule's test expects)."""
    return _service(
        rule.rule.service, ruleset, scores, stats or RuleStats(), budget_seconds, rules=[rule]
    )
