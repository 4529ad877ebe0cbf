"""The `fhir-model` validator: element names, status codes and score fields a rule reads that
do not exist, and numbers or dates compared as strings, so the rule would silently never fire
(`%bp.vaule`, `status: [drfat]`, `%scores.has_bled.valeu`, `%dose >= '500'`).

It reads what the compiled expressions name (`CompiledPath.members`, `.roots`, `.fields`):
`%variable.element` where the variable is a `select:` binding (its resource types) or a prefetch
key (a read: its type; a search: a Bundle); the elements a `select:`'s `where`/`sort` reads from
each resource; a `status:` list against its types' codes; `%scores.<score>.<field>` against a
score result's fields. Past the first element, a path is followed through the model's types
(`%latest.value.ofType(Quantity).vaule`: Observation.value holds a Quantity, which has no
`vaule`), through `ofType(...)` (which must name a type the element holds) and the functions
that keep their input's items (`first()`, `where(...)`); it stops at a choice element not yet
narrowed by `ofType`, at a resource of any type (`Bundle.entry.resource`), at a primitive and
at any other function.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from cds_service.issues import RuleIssue
from cds_service.prefetch.gaps import template_type
from cds_service.rules.compiled import CompiledCondition, CompiledRule, CompiledSelect
from cds_service.rules.fhir_model import ANY_RESOURCE, element_types, elements, status_codes
from cds_service.rules.fhirpath import CompiledPath, Step
from cds_service.rules.lint.base import Loc, Validator
from cds_service.suggest import did_you_mean

__all__ = ["SCORE_FIELDS", "FhirModel"]

#: The fields of a score as rules read it (`%scores.<name>.<field>`).
SCORE_FIELDS = frozenset(
    {
        "score", "value", "unit", "inputs", "reason", "sources", "computed_at", "provenance",
        "unknown", "source", "note",
    }
)  # fmt: skip


def _hint(name: str, known: frozenset[str]) -> str:
    close = did_you_mean(name, known)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


class FhirModel(Validator):
    """Elements, status codes and score fields checked against the FHIR R4 model."""

    id = "fhir-model"
    description = (
        "An element, status code or score field the rule reads does not exist in the FHIR R4 "
        "model (or in a score's result), so the rule would never fire on it."
    )
    severity = "error"

    def validate(self, rule: CompiledRule) -> Iterator[RuleIssue]:
        types: dict[str, tuple[str, ...]] = {}
        for key, template in rule.rule.prefetch.items():
            resource_type = template_type(template)
            if resource_type is not None:
                read = "?" not in template.split("/", 1)[-1] and "/" in template
                types[key] = (resource_type,) if read else ("Bundle",)
        for binding in rule.bindings:
            loc: Loc = ("let", binding.name)
            if binding.path is not None:
                yield from self._path(rule, loc, binding.path, types, None)
                source = binding.path.filters
                if source is not None and source in types:  # `%readings.first()`: the same
                    types[binding.name] = types[source]
            elif binding.select is not None:
                yield from self._select(rule, loc, binding.select, types)
                types[binding.name] = binding.select.resources
        for loc, path in _leaves(rule.condition, ("when",)):
            yield from self._path(rule, loc, path, types, None)

    def _select(
        self,
        rule: CompiledRule,
        loc: Loc,
        select: CompiledSelect,
        types: dict[str, tuple[str, ...]],
    ) -> Iterator[RuleIssue]:
        for part, path in (("where", select.where), ("sort", select.sort)):
            if path is not None:
                yield from self._path(rule, (*loc, part), path, types, select.resources)
        known = status_codes(select.resources)
        if select.statuses is not None and known is not None:
            for code in sorted(select.statuses - known):
                names = " or ".join(select.resources)
                yield self.rule_issue(
                    rule,
                    (*loc, "status"),
                    f"'{code}' is not a status of {names}{_hint(code, known)}; "
                    f"its codes: {', '.join(sorted(known))}",
                )

    def _path(
        self,
        rule: CompiledRule,
        loc: Loc,
        path: CompiledPath,
        types: dict[str, tuple[str, ...]],
        root: tuple[str, ...] | None,
    ) -> Iterator[RuleIssue]:
        for variable, member in sorted(path.members):
            message = _missing(member, types.get(variable))
            if message is not None:
                yield self.rule_issue(rule, loc, f"%{variable}.{member}: {message}")
        if root is not None:
            for member in sorted(path.roots - set(root)):
                message = _missing(member, root)
                if message is not None:
                    yield self.rule_issue(rule, loc, f"{member}: {message}")
        for base, steps in sorted(path.chains, key=repr):
            start = types.get(base) if base is not None else root
            message = _deep(f"%{base}" if base is not None else "", start, steps)
            if message is not None:
                yield self.rule_issue(rule, loc, message)
        for literal in sorted(path.compared):
            message = _string_compared(literal)
            if message is not None:
                yield self.rule_issue(rule, loc, message)
        for variable, score, field in sorted(path.fields):
            if variable == "scores" and field not in SCORE_FIELDS:
                yield self.rule_issue(
                    rule,
                    loc,
                    f"%scores.{score}.{field}: a score has no field '{field}'"
                    f"{_hint(field, SCORE_FIELDS)}; its fields: value, unit, reason, inputs, "
                    "provenance, unknown, sources, computed_at, source, note",
                )


_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)\s*(\S.*)?$")
_DATE = re.compile(r"^\d{4}(?:-\d{2}(?:-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?)?$")


def _string_compared(literal: str) -> str | None:
    """Why comparing with `<`/`>` against this string literal is a mistake (a number, quantity
    or date written as a string compares as text, or not at all), or None."""
    if _DATE.match(literal):
        return f"compares with the string '{literal}': a date is written @{literal}"
    number = _NUMBER.match(literal)
    if number is None:
        return None
    value, unit = number.groups()
    written = f"{value} '{unit}'" if unit else value
    kind = "quantity" if unit else "number"
    return f"compares with the string '{literal}': a {kind} is written {written}, unquoted"


def _missing(member: str, resource_types: tuple[str, ...] | None) -> str | None:
    """Why `member` is no element of any of the types, or None when it is one (or the types
    are not known to the model)."""
    if not resource_types:
        return None
    known: set[str] = set()
    for resource_type in resource_types:
        names = elements(resource_type)
        if names is None:
            return None
        known |= names
    if member in known:
        return None
    types = " or ".join(resource_types)
    return f"{types} has no element '{member}'{_hint(member, frozenset(known))}"


def _deep(base: str, start: tuple[str, ...] | None, steps: tuple[Step, ...]) -> str | None:
    """The first element or `ofType` past a path's first element that the types reached there
    do not have, as `<path>: <why>`; None when there is none or the types are not known."""
    if not start:
        return None
    current = frozenset(start)
    written = base
    for index, (kind, name) in enumerate(steps):
        shown = _written(written, kind, name)
        if kind == "member":
            if current & ANY_RESOURCE:
                return None
            held: set[str] = set()
            known: set[str] = set()
            for type_name in current:
                table = element_types(type_name)
                if table is None:  # a primitive, or a type the model does not know
                    return None
                known |= table.keys()
                held |= table.get(name, frozenset())
            if name not in known:
                if index == 0:  # the first element: reported by the members and roots checks
                    return None
                types = " or ".join(sorted(current))
                return f"{shown}: {types} has no element '{name}'{_hint(name, frozenset(known))}"
            current = frozenset(held)
        elif kind == "type":
            if current & ANY_RESOURCE:
                if element_types(name) is None and name[:1].isupper():
                    return f"{shown}: '{name}' is not a FHIR resource type"
            elif name not in current:
                holds = ", ".join(sorted(current))
                return f"{shown}: {written} holds {holds}, not '{name}'{_hint(name, current)}"
            current = frozenset({name})
        elif kind != "keep":
            return None
        written = shown
    return None


def _written(path: str, kind: str, name: str) -> str:
    """`path` followed by a step, as a rule author wrote it (arguments elided)."""
    dot = "." if path else ""
    if kind == "member":
        return f"{path}{dot}{name}"
    if kind == "type":
        return f"{path}{dot}ofType({name})"
    arguments = "…" if name in ("where", "take", "skip") else ""
    return f"{path}{dot}{name}({arguments})"


def _leaves(condition: CompiledCondition, loc: Loc) -> Iterator[tuple[Loc, CompiledPath]]:
    """Each leaf's expression with its place in the rule file (as the compiler numbers them)."""
    if condition.kind == "leaf":
        if condition.path is not None:
            yield (*loc, "fhirpath"), condition.path
        return
    if condition.kind == "not":
        yield from _leaves(condition.members[0], (*loc, "not"))
        return
    for index, member in enumerate(condition.members):
        yield from _leaves(member, (*loc, condition.kind, index))
