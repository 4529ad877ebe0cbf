"""Evaluating rules: a pure function of (rule, context, prefetch, scores, now).

Every path (the HTTP route, `rules test`, `rules explain`, benchmarks) reaches `evaluate_rule`
through the one pipeline (`rules/pipeline.py`), lazily, so a rule decides the same everywhere.
Semantics, for rule authors:

- the FHIRPath root is the hook's `context`; prefetch keys are `%key`, earlier bindings `%name`,
  the frozen clock `%now`, risk scores `%scores.<name>`;
- a condition leaf is true only when its expression yields exactly `[true]`; empty is false;
- a rule whose prefetch data could not be obtained (or only in part) is skipped, never evaluated
  on missing data; so is a rule whose selection of a resource type (without `from:`) reads a key
  of that type that failed to load, and a rule that reads a score some input of which is unknown
  (its data failed to load): what failed is unknown, never empty, so no condition is decided
  false on it (`optionalPrefetch` keys are the author's exception: evaluated as empty);
- a rule that raises, or runs past its time budget, is skipped and counted; other rules go on;
- a rule emits at most one card.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fhirpathpy.engine.nodes import FP_DateTime
from pydantic import ValidationError

from cds_service.clock import shift
from cds_service.patient import age_in_years
from cds_service.rules.compiled import (
    CompiledBinding,
    CompiledCondition,
    CompiledRule,
    CompiledSelect,
    score_variable,
)
from cds_service.rules.index import DataIndex
from cds_service.rules.model import CardTemplate
from cds_service.rules.templates import render_text, render_value, unwrap
from cds_service.scores.provider import SCORE_PREFETCH
from cds_service.validation import field_errors
from cds_service.wire.response import Card

__all__ = ["RequestData", "RuleOutcome", "evaluate_rule", "now_stamp", "render_card"]

log = logging.getLogger(__name__)

# `suppressed`: the rule fired but an override snoozes it for the patient (no card; see
# rules/snooze.py), set by the service after evaluation.
Status = Literal["fired", "silent", "skipped", "error", "timeout", "suppressed"]


def now_stamp(at: datetime) -> str:
    """`%now` as rules see it: the instant in UTC, written with `Z` and its microseconds."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class RequestData:
    """One call's data, shared by all rules evaluated for it."""

    context: dict[str, Any]
    prefetch: Mapping[str, Any]  # key → resource/Bundle, or None when known empty
    unavailable: frozenset[str] = frozenset()  # keys that could not be obtained
    scores: Mapping[str, Any] = field(default_factory=dict)
    now: datetime | None = None
    # True while the service has not computed the scores yet: a rule that reaches an expression
    # reading `%scores` stops with ScoresNeeded, and is evaluated again once they are provided.
    scores_pending: bool = False
    base_url: str = "http://127.0.0.1:8080"  # resolves links written as /path in rules
    # Keys that failed to load (unavailable or obtained in part), with why (`prefetch.gaps`);
    # the resource type of each key (from its template); keys optional for every rule of the
    # service that declares them (their failure is the authors' accepted exception).
    failed: Mapping[str, str] = field(default_factory=dict)
    key_types: Mapping[str, str] = field(default_factory=dict)
    optional: frozenset[str] = frozenset()
    index: DataIndex = field(init=False)
    _base: dict[str, Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        sources = {**self.context, **{k: v for k, v in self.prefetch.items() if v is not None}}
        self.index = DataIndex(sources)

    def variables(self) -> dict[str, Any]:
        """The `%variables` every rule starts from (built once per call, copied per rule)."""
        if self._base is None:
            out: dict[str, Any] = {k: ([] if v is None else v) for k, v in self.prefetch.items()}
            out["scores"] = dict(self.scores)
            out["today"] = out["now"] = out["age"] = []
            if self.now is not None:
                utc = self.now.astimezone(UTC)
                out["now"] = FP_DateTime(now_stamp(utc))  # type: ignore[no-untyped-call]
                out["today"] = FP_DateTime(utc.date().isoformat())  # type: ignore[no-untyped-call]
                age = self._age(utc)
                out["age"] = [] if age is None else [age]
            self._base = out
        return dict(self._base)

    def provide_scores(self, scores: Mapping[str, Any]) -> None:
        """Set the scores (by variable name) once they are computed."""
        self.scores = scores
        self.scores_pending = False
        if self._base is not None:  # the rest of the variables stay as they are
            self._base["scores"] = dict(scores)

    def _age(self, at: datetime) -> int | None:
        """The age at `at` from the call's Patient.birthDate (`age_in_years`; None without one)."""
        for patient in self.index.resources("Patient", self.prefetch_sources()):
            age = age_in_years(patient.get("birthDate"), at)
            if age is not None:
                return age
        return None

    def failed_of(self, resource_types: tuple[str, ...], optional: list[str]) -> list[str]:
        """The keys of these resource types that failed to load, except optional ones."""
        return [
            key
            for key in self.failed
            if self.key_types.get(key) in resource_types
            and key not in self.optional
            and key not in optional
        ]

    def unknown_scores(self, names: list[str]) -> dict[str, str]:
        """The scores (by name) some input of which is unknown, with what failed."""
        out: dict[str, str] = {}
        for name in names:
            result = self.scores.get(score_variable(name))
            if isinstance(result, Mapping) and result.get("unknown"):
                out[name] = str(result.get("reason") or "not computable")
        return out

    def prefetch_sources(self) -> list[str]:
        """The prefetch keys that hold data, in order."""
        return [k for k, v in self.prefetch.items() if v is not None]


@dataclass(slots=True)
class RuleOutcome:
    """What happened to one rule on one call (also what `rules explain` prints)."""

    rule_id: str
    status: Status
    card: Card | None = None
    bindings: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, bool] = field(default_factory=dict)
    reason: str | None = None
    elapsed_ms: float = 0.0
    # Where an `error` was raised: the binding or condition (`let.since`, `when.recent`), its
    # `file:line:col` and expression; `detail` is the exception's own message, which may quote
    # patient data: shown by `rules explain`, never logged.
    failed_at: str | None = None
    location: str | None = None
    expression: str | None = None
    detail: str | None = None
    # The prefetch keys whose data could not be obtained, when that skipped the rule.
    missing: tuple[str, ...] = ()


class _OverBudget(Exception):
    pass


class _DataUnknown(Exception):
    """A rule reached data that failed to load: it is skipped, never decided on it."""

    def __init__(self, keys: list[str], reason: str) -> None:
        super().__init__(reason)
        self.keys = keys
        self.reason = reason


class ScoresNeeded(Exception):
    """A rule reached an expression reading `%scores` before the scores were provided.

    `partial` holds the bindings computed so far (none reads `%scores`), for `resume`."""

    def __init__(self, partial: RuleOutcome | None = None) -> None:
        super().__init__("scores needed")
        self.partial = partial


class ExpressionError(Exception):
    """fhirpathpy reports some errors (e.g. `single()` on two items) as an error value."""


def _checked(result: list[Any]) -> list[Any]:
    for item in result:
        if isinstance(item, dict) and item.get("$status") == "error":
            raise ExpressionError(str(item.get("$error", "FHIRPath error")))
    return result


def _truthy(result: list[Any]) -> bool:
    return len(_checked(result)) == 1 and result[0] is True


def _select(select: CompiledSelect, data: RequestData, variables: dict[str, Any]) -> list[Any]:
    def compute() -> list[Any]:
        sources = select.sources or data.prefetch_sources()
        found = [r for kind in select.resources for r in data.index.resources(kind, sources)]
        if select.value_set is not None:
            found = data.index.coded(found, select.value_set)
        if select.statuses is not None:
            found = [r for r in found if _has_status(r, select.statuses)]
        if select.within is not None:
            since = shift(data.now, -select.within[0], select.within[1]) if data.now else None
            found = [
                r
                for r in found
                if since is not None
                and (d := data.index.clinical_date(r)) is not None
                and since <= d <= data.now  # type: ignore[operator]
            ]
        if select.sort_by_date:
            epoch = datetime.min.replace(tzinfo=UTC)
            found = sorted(
                found, key=lambda r: data.index.clinical_date(r) or epoch, reverse=select.descending
            )
        elif select.sort is not None:
            keyed = [(unwrap(select.sort(r, variables)), r) for r in found]
            present = [(k, r) for k, r in keyed if k is not None and not isinstance(k, list)]
            present.sort(key=lambda kr: str(kr[0]), reverse=select.descending)
            found = [r for _, r in present] + [
                r for k, r in keyed if k is None or isinstance(k, list)
            ]
        where = select.where
        if where is None:
            return found[:1] if select.first else found
        if select.first:  # sorted already: test in order and stop at the first match
            return next(([r] for r in found if _truthy(where(r, variables))), [])
        return [r for r in found if _truthy(where(r, variables))]

    # where/sort may read bindings, so only selections without them are shared across rules.
    if not ((select.where and select.where.variables) or (select.sort and select.sort.variables)):
        return data.index.memo(select.key, compute)
    return compute()


_CLINICAL = ("Condition", "AllergyIntolerance")
_NOT_REAL = {"refuted", "entered-in-error"}


def _codes(concept: Any) -> set[str]:
    if isinstance(concept, str):  # STU3 spelled these as bare codes
        return {concept}
    if isinstance(concept, dict):
        codings = concept.get("coding")
        return {
            c["code"]
            for c in (codings if isinstance(codings, list) else ())
            if isinstance(c, dict) and isinstance(c.get("code"), str)
        }
    return set()


def _has_status(resource: dict[str, Any], wanted: frozenset[str]) -> bool:
    if resource.get("resourceType") in _CLINICAL:
        if _codes(resource.get("verificationStatus")) & _NOT_REAL:
            return False
        return bool(_codes(resource.get("clinicalStatus")) & wanted)
    status = resource.get("status")
    return isinstance(status, str) and status in wanted


@dataclass(slots=True)
class _Run:
    """One evaluation of one rule: its bindings as they are computed, and its budget."""

    rule: CompiledRule
    data: RequestData
    outcome: RuleOutcome
    deadline: float
    eager: bool
    variables: dict[str, Any]
    # What is being evaluated, for errors (`_position` says where: only when one is raised).
    current: CompiledBinding | CompiledCondition | None = None

    def bind(self, bindings: tuple[CompiledBinding, ...]) -> None:
        """Compute the bindings not computed yet, in order."""
        for binding in bindings:
            if binding.name in self.outcome.bindings:
                continue
            if time.perf_counter() > self.deadline:
                raise _OverBudget
            if "scores" in binding.reads:
                self.scores_known(_score_members(binding))
            self.current = binding
            if binding.select is not None:
                self.selection_known(binding.select)
                value = _select(binding.select, self.data, self.variables)
            else:
                assert binding.path is not None
                value = _checked(binding.path(self.data.context, self.variables))
            self.variables[binding.name] = value
            self.outcome.bindings[binding.name] = value

    def scores_known(self, members: frozenset[tuple[str, str]]) -> None:
        """Stop for the scores while they are pending; skip the rule when a score the
        expression reads (`%scores.<member>`) has an unknown input (its data failed to load)."""
        if self.data.scores_pending:
            raise ScoresNeeded(self.outcome)
        read = {member for variable, member in members if variable == "scores"}
        names = [n for n in self.rule.rule.scores if score_variable(n) in read]
        unknown = self.data.unknown_scores(names)
        if unknown:
            keys = sorted(k for k in self.data.failed if k in SCORE_PREFETCH)
            reason = "; ".join(f"{name} {why}" for name, why in unknown.items())
            raise _DataUnknown(keys, reason)

    def selection_known(self, select: CompiledSelect) -> None:
        """Skip the rule when a selection over every source reads a key that failed to load
        (a key named in `from:` was checked before evaluation)."""
        if select.sources is not None or not self.data.failed:
            return
        keys = self.data.failed_of(select.resources, self.rule.rule.optionalPrefetch)
        if keys:
            raise _DataUnknown(keys, ", ".join(keys))

    def condition(self, condition: CompiledCondition) -> bool:
        if time.perf_counter() > self.deadline:
            raise _OverBudget
        if condition.kind == "leaf":
            assert condition.path is not None and condition.id is not None
            self.bind(self.rule.condition_bindings[condition.id])
            if "scores" in condition.path.variables:
                self.scores_known(condition.path.members)
            self.current = condition
            value = _truthy(condition.path(self.data.context, self.variables))
            self.outcome.conditions[condition.id] = value
            return value
        if condition.kind == "not":
            return not self.condition(condition.members[0])
        wanted = condition.kind == "any"  # the value that decides: any → true, all → false
        decided = False
        for member in condition.members:
            if self.condition(member) is wanted:
                decided = True
                if not self.eager:
                    break
        return decided if wanted else not decided


def evaluate_rule(
    rule: CompiledRule,
    data: RequestData,
    *,
    budget_seconds: float = 0.5,
    eager: bool = False,
    resume: RuleOutcome | None = None,
) -> RuleOutcome:
    """Evaluate one rule. Failures come back as `error`/`timeout` outcomes; the only exception
    raised is ScoresNeeded, while `data.scores_pending`. `resume` continues from the partial
    outcome a ScoresNeeded carried, once the scores are provided.

    Evaluation is lazy: a condition's bindings are computed just before it is tested, all/any
    stop at the first member that decides, and bindings that only feed the card are computed once
    the rule fires. That is the verdict in every path. `eager=True` computes every binding and
    every condition so each can be shown (`rules explain`, a test's expected conditions); it
    decides the same, except that a binding production never reaches can fail only eagerly (then
    the eager outcome is `error` where the verdict is not).
    """
    started = time.perf_counter()
    outcome = RuleOutcome(rule.id, "silent")
    missing = sorted(rule.prefetch_keys & (data.unavailable | data.failed.keys()))
    if missing:
        outcome.status = "skipped"
        outcome.missing = tuple(missing)
        outcome.reason = "data unavailable: " + ", ".join(missing)
        return outcome
    variables = data.variables()
    if resume is not None:  # the bindings computed before ScoresNeeded stay valid
        outcome.bindings = dict(resume.bindings)
        variables.update(resume.bindings)
    run = _Run(rule, data, outcome, started + budget_seconds, eager, variables)
    try:
        with data.index.active():  # memberOf() and drug() resolve medications through it
            if eager:
                run.bind(rule.bindings)
            if run.condition(rule.condition):
                run.bind(rule.bindings)
                outcome.card = render_card(rule.rule.card, outcome.bindings, data.base_url)
                outcome.status = "fired"
    except ScoresNeeded:
        raise
    except _DataUnknown as unknown:
        outcome.status = "skipped"
        outcome.missing = tuple(unknown.keys)
        outcome.reason = f"data unavailable: {unknown.reason}"
        outcome.card = None
    except _OverBudget:
        outcome.status = "timeout"
        outcome.reason = f"ran past its budget of {budget_seconds * 1000:.0f} ms"
    except ValidationError as exc:
        outcome.status = "error"
        outcome.reason = f"the rendered card is invalid: {field_errors(exc)[0]}"
    except Exception as exc:  # a rule must never take the call down
        outcome.status = "error"
        kind = "FHIRPath error" if isinstance(exc, ExpressionError) else type(exc).__name__
        outcome.detail = str(exc)[:500]
        if run.current is not None:
            outcome.failed_at, outcome.location, outcome.expression = _position(run.current)
            outcome.reason = f"{kind} in {outcome.failed_at} at {outcome.location}"
        else:
            outcome.reason = f"{kind} while evaluating"
    outcome.elapsed_ms = (time.perf_counter() - started) * 1000
    if outcome.status in ("error", "timeout"):
        # The expression is the rule's text; the exception's message may quote patient data.
        shown = f" `{outcome.expression}`" if outcome.expression else ""
        log.warning("rule %s %s: %s%s", rule.id, outcome.status, outcome.reason, shown)
    return outcome


def _position(item: CompiledBinding | CompiledCondition) -> tuple[str, str, str]:
    """Where an error was raised: the binding or condition (`let.since`, `when.recent`), its
    `file:line:col` and its expression."""
    if isinstance(item, CompiledBinding):
        return f"let.{item.name}", item.where, _expression_of(item)
    return f"when.{item.id}", item.where, item.path.expression if item.path is not None else ""


def _score_members(binding: CompiledBinding) -> frozenset[tuple[str, str]]:
    """The `%variable.member`s a binding's expressions read."""
    if binding.path is not None:
        return binding.path.members
    select = binding.select
    paths = (select.where, select.sort) if select is not None else ()
    return frozenset(m for p in paths if p is not None for m in p.members)


def _expression_of(binding: CompiledBinding) -> str:
    """The text of a binding, for messages: its FHIRPath, or what its selection filters on."""
    if binding.path is not None:
        return binding.path.expression
    select = binding.select
    parts = [f"select {', '.join(select.resources)}"] if select is not None else []
    if select is not None and select.where is not None:
        parts.append(f"where {select.where.expression}")
    if select is not None and select.sort is not None:
        parts.append(f"sort {select.sort.expression}")
    return ", ".join(parts)


def _summary(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) < 140 else text[:138].rstrip() + "…"


def render_card(
    template: CardTemplate, bindings: Mapping[str, Any], base_url: str = "http://127.0.0.1:8080"
) -> Card:
    """Fill the card template with binding values and build the wire Card (validated).

    A link or source URL written as a path (`/smart/launch`) points at this service: it is
    resolved against CDS_PUBLIC_BASE_URL (or the URL the EHR called).
    """
    raw = template.model_dump(by_alias=True, exclude_none=True)
    rendered = render_value(raw, bindings)
    rendered["summary"] = _summary(render_text(template.summary, bindings))
    for link in rendered.get("links", []):
        if isinstance(link.get("url"), str) and link["url"].startswith("/"):
            link["url"] = base_url.rstrip("/") + link["url"]
    return Card.model_validate(rendered)  # camelCase is the wire (alias) spelling
