"""Rules turned into ready-to-run form when they load: every expression parsed, every name checked.

Anything that can be known before a call is checked here, so a rule never surprises anyone at
request time: FHIRPath syntax, `%variables` (prefetch keys, earlier bindings, `%now`, `%scores`),
template names, value sets, score names, prefetch templates, the hook. An exception while a value
is checked (a bug of ours) is an error at that value, like the others: never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from cds_service.exceptions import ConfigurationError
from cds_service.issues import RuleIssue, internal_error
from cds_service.prefetch.templates import check_template
from cds_service.rules.conformance import unsupported_constructs
from cds_service.rules.fhirpath import CompiledPath, FhirPathError, compile_path, parse_expression
from cds_service.rules.model import AllOf, AnyOf, Condition, LeafCondition, Rule, Select
from cds_service.rules.templates import template_names
from cds_service.rules.valuesets import ValueSet
from cds_service.services.suppression import SnoozePolicy
from cds_service.suggest import unknown_name
from cds_service.wire.contexts import hook_spec
from cds_service.yamlsource import Located, field_path

__all__ = [
    "CompiledBinding",
    "CompiledCondition",
    "CompiledRule",
    "CompiledSelect",
    "compile_rule",
    "duration",
    "rule_expressions",
    "score_variable",
]

Loc = tuple[str | int, ...]
P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)
# Variables every expression may read (see rules/README.md).
BUILTIN_VARIABLES = frozenset({"now", "today", "age", "scores"})


def duration(text: str) -> tuple[int, str]:
    """A validated duration (`6 months`) as (6, "month")."""
    amount, unit = text.split()
    return int(amount), unit.rstrip("s")


def score_variable(name: str) -> str:
    """How a score is named under `%scores`: `cha2ds2-vasc` → `cha2ds2_vasc`."""
    return name.replace("-", "_")


@dataclass(frozen=True, slots=True)
class CompiledSelect:
    resources: tuple[str, ...]  # resource types, in order
    sources: tuple[str, ...] | None
    value_set: ValueSet | None
    where: CompiledPath | None
    sort: CompiledPath | None
    descending: bool
    first: bool
    statuses: frozenset[str] | None = None
    within: tuple[int, str] | None = None
    sort_by_date: bool = False

    # Identical selections (in any rule) share one result per call: this is their identity.
    key: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (
            self.resources,
            self.sources,
            self.value_set.id if self.value_set else None,
            self.where.expression if self.where else None,
            self.sort.expression if self.sort else None,
            self.descending,
            self.first,
            self.statuses,
            self.within,
            self.sort_by_date,
        )
        object.__setattr__(self, "key", key)


@dataclass(frozen=True, slots=True)
class CompiledBinding:
    name: str
    path: CompiledPath | None = None
    select: CompiledSelect | None = None
    where: str = ""  # `file:line:col` of the binding, named when its evaluation fails

    # The `%variables` this binding reads (computed once: serving checks it per call).
    reads: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.path is not None:
            reads = self.path.variables
        else:
            assert self.select is not None
            paths = (self.select.where, self.select.sort)
            reads = frozenset(v for p in paths if p is not None for v in p.variables)
        object.__setattr__(self, "reads", reads)


@dataclass(frozen=True, slots=True)
class CompiledCondition:
    kind: str  # leaf | all | any | not
    id: str | None = None
    path: CompiledPath | None = None
    members: tuple[CompiledCondition, ...] = ()
    where: str = ""  # `file:line:col` of a leaf's expression, named when it fails


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    path: Path
    bindings: tuple[CompiledBinding, ...]
    condition: CompiledCondition
    # The prefetch keys without which the rule is skipped (all but `optionalPrefetch`).
    prefetch_keys: frozenset[str] = field(default_factory=frozenset)
    # The rule's `suppress:` block: the override reasons that snooze it, and for how long.
    suppress: SnoozePolicy | None = None
    # Where each value stands in the rule's file, for lint validators' `path:line:col`.
    source: Located | None = field(default=None, repr=False, compare=False)

    # For each condition (by id), the bindings it depends on, directly or through other
    # bindings, in order. Serving computes them just before the condition is tested, so a
    # condition that all/any never reaches costs nothing, nor do bindings that only feed the card.
    condition_bindings: Mapping[str, tuple[CompiledBinding, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        needs = {
            leaf.id: self._needed(leaf.path.variables)
            for leaf in leaf_conditions(self.condition)
            if leaf.id is not None and leaf.path is not None
        }
        object.__setattr__(self, "condition_bindings", needs)

    @property
    def reads(self) -> frozenset[str]:
        """Every `%variable` an expression of the rule names (bindings, filters, conditions)."""
        names = {v for binding in self.bindings for v in binding.reads}
        for leaf in leaf_conditions(self.condition):
            if leaf.path is not None:
                names |= leaf.path.variables
        return frozenset(names)

    def _needed(self, reads: frozenset[str]) -> tuple[CompiledBinding, ...]:
        needed = set(reads)
        for binding in reversed(self.bindings):
            if binding.name in needed:
                needed |= binding.reads
        return tuple(b for b in self.bindings if b.name in needed)

    @property
    def id(self) -> str:
        return self.rule.id


def rule_expressions(rule: CompiledRule) -> Iterator[tuple[str, CompiledPath]]:
    """Every FHIRPath expression of a rule with its `file:line:col` (a `select:`'s `where` and
    `sort` at the binding's), in order: bindings, then the conditions."""
    for binding in rule.bindings:
        if binding.path is not None:
            yield binding.where, binding.path
        if binding.select is not None:
            for path in (binding.select.where, binding.select.sort):
                if path is not None:
                    yield binding.where, path
    for leaf in leaf_conditions(rule.condition):
        if leaf.path is not None:
            yield leaf.where, leaf.path


def leaf_conditions(condition: CompiledCondition) -> Iterator[CompiledCondition]:
    """The named tests of a condition tree, in order."""
    if condition.kind == "leaf":
        yield condition
    for member in condition.members:
        yield from leaf_conditions(member)


class _Compiler:
    def __init__(
        self,
        rule: Rule,
        path: Path,
        located: Located,
        value_sets: Mapping[str, ValueSet],
        functions: Mapping[str, Any],
        known_scores: frozenset[str],
    ) -> None:
        self.rule = rule
        self.path = path
        self.located = located
        self.value_sets = value_sets
        self.functions = functions
        self.known_scores = known_scores
        self.issues: list[RuleIssue] = []

    def at(self, loc: Loc) -> str:
        """`file:line:col` of a value of the rule."""
        line, col = self.located.position(loc)
        return f"{self.path}:{line}:{col}"

    def issue(self, loc: Loc, message: str) -> None:
        line, col = self.located.position(loc)
        self.issues.append(RuleIssue(self.path, line, col, field_path(loc), message, self.rule.id))

    def expression(self, loc: Loc, text: str, allowed: set[str]) -> CompiledPath | None:
        """A FHIRPath expression compiled and checked; None when it has an error (reported)."""
        return self.guarded(loc, self._expression, loc, text, allowed)

    def _expression(self, loc: Loc, text: str, allowed: set[str]) -> CompiledPath | None:
        try:
            compiled = compile_path(text, functions=self.functions)
        except FhirPathError as exc:
            where = f" (column {exc.column} of the expression)" if exc.column else ""
            self.issue(loc, f"{exc}{where}")
            return None
        except Exception as exc:  # fhirpathpy's own errors have no common base class
            self.issue(loc, f"FHIRPath error: {exc}")
            return None
        # What fhirpathpy 2.2.4 evaluates wrongly is refused here, never answered wrongly later.
        for message in unsupported_constructs(parse_expression(text)):
            self.issue(loc, message)
        unknown = sorted(compiled.variables - allowed)
        if unknown:
            self.issue(
                loc,
                f"unknown variable %{unknown[0]} (known here: "
                + ", ".join(f"%{v}" for v in sorted(allowed))
                + ")",
            )
        for call in compiled.calls:
            if call.name != "memberOf":
                continue
            name = call.literals[0] if len(call.literals) == 1 else None
            if name is None:
                self.issue(loc, "memberOf() needs a value set id in single quotes")
            elif name not in self.value_sets:
                self.issue(loc, _unknown_value_set(name, self.value_sets))
        declared = {score_variable(s) for s in self.rule.scores}
        for variable, member in sorted(compiled.members):
            if variable == "scores" and member not in declared:
                self.issue(loc, f"%scores.{member} is not declared under `scores:`")
        return compiled

    def select(self, loc: Loc, select: Select, allowed: set[str]) -> CompiledSelect:
        value_set = None
        if select.coded is not None:
            value_set = self.value_sets.get(select.coded)
            if value_set is None:
                self.issue((*loc, "coded"), _unknown_value_set(select.coded, self.value_sets))
        sources = tuple(select.from_) if select.from_ else None
        known_sources = set(self.rule.prefetch) | _context_fields(self.rule.hook)
        for index, source in enumerate(sources or ()):
            if source not in known_sources:
                self.issue(
                    (*loc, "from", index),
                    f"'{source}' is neither a prefetch key of this "
                    "rule nor a context field of the hook",
                )
        where = sort = None
        if select.where:
            where = self.expression((*loc, "where"), select.where, allowed)
        descending = by_date = False
        if select.sort:
            text = select.sort.strip()
            descending = text.startswith("-")
            key = text.lstrip("-").strip()
            by_date = key == "date"
            if not by_date:
                sort = self.expression((*loc, "sort"), key, allowed)
        within = duration(select.within) if select.within else None
        statuses = frozenset(select.status) if select.status else None
        resources = (select.resources,) if isinstance(select.resources, str) else select.resources
        return CompiledSelect(
            tuple(resources),
            sources,
            value_set,
            where,
            sort,
            descending,
            select.first,
            statuses,
            within,
            by_date,
        )

    def condition(
        self, loc: Loc, condition: Condition, allowed: set[str], ids: set[str]
    ) -> CompiledCondition:
        if isinstance(condition, LeafCondition):
            if condition.id in ids:
                self.issue((*loc, "id"), f"condition id '{condition.id}' is used twice")
            ids.add(condition.id)
            at = (*loc, "fhirpath")
            path = self.expression(at, condition.fhirpath, allowed)
            return CompiledCondition("leaf", condition.id, path, where=self.at(at))
        if isinstance(condition, AllOf):
            members = tuple(
                self.condition((*loc, "all", i), c, allowed, ids)
                for i, c in enumerate(condition.all)
            )
            return CompiledCondition("all", members=members)
        if isinstance(condition, AnyOf):
            members = tuple(
                self.condition((*loc, "any", i), c, allowed, ids)
                for i, c in enumerate(condition.any)
            )
            return CompiledCondition("any", members=members)
        member = self.condition((*loc, "not"), condition.not_, allowed, ids)
        return CompiledCondition("not", members=(member,))

    def guarded(
        self, loc: Loc, check: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T | None:
        """`check(*args, **kwargs)`; None and an issue at `loc` when it raises. An exception
        while checking a value is a bug of ours, reported at the value like any other error
        (the rule left out), never raised at the author, the linter or a reload."""
        try:
            return check(*args, **kwargs)
        except Exception as exc:
            log.error("checking %s failed", self.at(loc), exc_info=exc)
            self.issue(loc, internal_error(exc))
            return None

    def run(self) -> CompiledRule | None:
        rule = self.rule
        self.guarded((), self.header)
        allowed = set(rule.prefetch) | BUILTIN_VARIABLES
        bindings = []
        for name, value in rule.let.items():
            loc: Loc = ("let", name)
            binding = self.guarded(loc, self.binding, loc, name, value, allowed)
            if binding is not None:  # else the issue is reported and the rule left out
                bindings.append(binding)
            allowed.add(name)
        when: Loc = ("when",)
        condition = self.guarded(when, self.condition, when, rule.when, allowed, set())
        self.guarded(("card",), self.card_templates)
        suppress = self.guarded(("suppress",), self.suppress)
        if self.issues or condition is None:  # every problem found here is an error
            return None  # (lint warnings: rules/lint/)
        return CompiledRule(
            rule,
            self.path,
            tuple(bindings),
            condition,
            frozenset(rule.prefetch) - frozenset(rule.optionalPrefetch),
            suppress=suppress,
            source=self.located,
        )

    def header(self) -> None:
        """The id, hook, prefetch templates, optional keys and scores."""
        rule = self.rule
        if rule.id != self.path.stem:
            self.issue(("id",), f"must equal the file name '{self.path.stem}'")
        if hook_spec(rule.hook) is None:
            self.issue(("hook",), f"'{rule.hook}' is not a hook of the library nor reverse-domain")
        context_fields = _context_fields(rule.hook)
        for key, template in rule.prefetch.items():
            try:
                check_template(template)
            except ConfigurationError as exc:
                self.issue(("prefetch", key), exc.message)
            if key in context_fields:
                self.issue(
                    ("prefetch", key),
                    f"'{key}' is a context field of {rule.hook}; "
                    "name the prefetch key differently so `from:` is unambiguous",
                )
        for index, key in enumerate(rule.optionalPrefetch):
            if key not in rule.prefetch:
                message = f"'{key}' is not a prefetch key of this rule"
                self.issue(("optionalPrefetch", index), message)
        for index, name in enumerate(rule.scores):
            if name not in self.known_scores:
                known = ", ".join(sorted(self.known_scores))
                self.issue(("scores", index), f"unknown score '{name}' (known: {known})")

    def binding(
        self, loc: Loc, name: str, value: str | Select, allowed: set[str]
    ) -> CompiledBinding | None:
        """A `let:` binding, or None when its expression has an error (reported)."""
        if name in allowed:
            self.issue(loc, f"'{name}' is already a prefetch key or a built-in variable")
        if isinstance(value, Select):
            select = self.select(loc, value, allowed)
            return CompiledBinding(name, select=select, where=self.at(loc))
        path = self.expression(loc, value, allowed)
        return None if path is None else CompiledBinding(name, path=path, where=self.at(loc))

    def card_templates(self) -> None:
        """Every `{{name}}` of the card names a binding."""
        card = self.rule.card.model_dump(by_alias=True, exclude_none=True)
        for loc, text in _card_texts(card):
            names, well_formed = template_names(text)
            if not well_formed:
                self.issue(("card", *loc), "stray '{{' or '}}': templates are {{name}}")
            for name in names:
                if name not in self.rule.let:
                    self.issue(("card", *loc), f"{{{{{name}}}}} is not a binding under `let:`")

    def suppress(self) -> SnoozePolicy | None:
        """The `suppress:` block as a policy; each reason must be a code of the card's
        `overrideReasons` (the codes an EHR can send back), whose system it takes."""
        block = self.rule.suppress
        if block is None:
            return None
        offered = {reason.code: reason.system for reason in self.rule.card.overrideReasons or ()}
        known = ", ".join(sorted(offered)) or "none: add card.overrideReasons"
        reasons = set()
        for index, code in enumerate(block.reasons):
            if code not in offered:
                self.issue(
                    ("suppress", "reasons", index),
                    f"'{code}' is not a code of the card's overrideReasons (its codes: {known})",
                )
            else:
                reasons.add((offered[code], code))
        return SnoozePolicy(frozenset(reasons), *duration(block.for_))


def _unknown_value_set(name: str, known: Mapping[str, Any]) -> str:
    """The message for a value set id that is not under rules/_valuesets/."""
    message = unknown_name("value set", name, [k for k in known if ":" not in k])  # ids
    return message if "did you mean" in message else f"{message}; add it under rules/_valuesets/"


def _context_fields(hook: str) -> set[str]:
    spec = hook_spec(hook)
    if spec is None:
        return set()
    return {f.alias or name for name, f in spec.context.model_fields.items()} | {
        name for name in spec.context.model_fields
    }


def _card_texts(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _card_texts(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _card_texts(item, (*loc, index))
    elif isinstance(value, str):
        yield loc, value


def compile_rule(
    rule: Rule,
    path: Path,
    located: Located,
    *,
    value_sets: Mapping[str, ValueSet],
    functions: Mapping[str, Any],
    known_scores: frozenset[str],
) -> tuple[CompiledRule | None, list[RuleIssue]]:
    """Compile one validated rule; returns it (None when it has errors) and every issue found."""
    compiler = _Compiler(rule, path, located, value_sets, functions, known_scores)
    compiled = compiler.run()
    return compiled, compiler.issues
