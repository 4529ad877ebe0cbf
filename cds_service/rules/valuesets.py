"""Local value sets (`rules/_valuesets/*.yaml|json`) and the `memberOf()` FHIRPath function.

A value set is a FHIR ValueSet resource; its codes come from `expansion.contains` (nested
`contains` included) and from `compose.include[].concept` (enumerated codes with their system).
It is referred to by its `id` (or its canonical `url`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cds_service.rules.issues import RuleIssue
from cds_service.yamlsource import read_yaml

__all__ = ["ValueSet", "codings_of", "load_value_sets", "member_of_function"]


@dataclass(frozen=True, slots=True)
class ValueSet:
    """A set of (system, code) pairs."""

    id: str
    url: str | None
    codes: frozenset[tuple[str, str]]
    bare: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bare", frozenset(code for _, code in self.codes))

    def contains(self, system: str | None, code: str | None) -> bool:
        """Membership of a coding; a bare code (no system) matches in any system."""
        if not code:
            return False
        if system:
            return (system, code) in self.codes
        return code in self.bare


def codings_of(value: Any) -> Iterable[tuple[str | None, str | None]]:
    """The (system, code) pairs of a Coding, CodeableConcept, list of either, or code string."""
    if isinstance(value, list):
        for item in value:
            yield from codings_of(item)
    elif isinstance(value, dict):
        if isinstance(value.get("coding"), list):
            yield from codings_of(value["coding"])
        elif "code" in value:
            system, code = value.get("system"), value.get("code")
            yield (
                system if isinstance(system, str) else None,
                code if isinstance(code, str) else None,
            )
    elif isinstance(value, str):
        yield (None, value)


def _contains(items: Any, out: set[tuple[str, str]]) -> None:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            if isinstance(item.get("system"), str) and isinstance(item.get("code"), str):
                out.add((item["system"], item["code"]))
            _contains(item.get("contains"), out)


def _parse(path: Path) -> tuple[dict[str, Any] | None, list[RuleIssue]]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return None, [RuleIssue(path, 1, 1, "", f"not valid JSON: {exc}")]
        return data, []
    located, errors = read_yaml(path)
    if located is None:
        return None, [RuleIssue(path, e.line, e.col, e.field, e.message) for e in errors]
    return located.value, []


def load_value_sets(directory: Path) -> tuple[dict[str, ValueSet], list[RuleIssue]]:
    """Every value set under `directory`, keyed by id and by url."""
    sets: dict[str, ValueSet] = {}
    issues: list[RuleIssue] = []
    if not directory.is_dir():
        return sets, issues
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json")):
        data, problems = _parse(path)
        issues.extend(problems)
        if data is None:
            continue
        if not isinstance(data, dict) or data.get("resourceType") != "ValueSet":
            issues.append(RuleIssue(path, 1, 1, "resourceType", "must be a FHIR ValueSet"))
            continue
        vs_id = data.get("id")
        if not isinstance(vs_id, str) or vs_id != path.stem:
            issues.append(RuleIssue(path, 1, 1, "id", f"must equal the file name '{path.stem}'"))
            continue
        codes: set[tuple[str, str]] = set()
        _contains((data.get("expansion") or {}).get("contains"), codes)
        for include in (data.get("compose") or {}).get("include", []) or []:
            system = include.get("system") if isinstance(include, dict) else None
            if not isinstance(system, str):
                continue
            for concept in include.get("concept", []) or []:
                if isinstance(concept, dict) and isinstance(concept.get("code"), str):
                    codes.add((system, concept["code"]))
        if not codes:
            issues.append(RuleIssue(path, 1, 1, "expansion", "the value set has no codes"))
            continue
        url = data.get("url") if isinstance(data.get("url"), str) else None
        value_set = ValueSet(vs_id, url, frozenset(codes))
        sets[vs_id] = value_set
        if url:
            sets[url] = value_set
    return sets, issues


def member_of_function(value_sets: Mapping[str, ValueSet]) -> dict[str, Any]:
    """Our FHIRPath functions: `memberOf(valueSet)` (true when any input code is a member) and a
    `single()` that raises as the specification says."""

    def member_of(inputs: list[Any], name: str) -> list[bool]:
        if not inputs:
            return []
        value_set = value_sets.get(name)
        if value_set is None:
            raise ValueError(f"unknown value set {name!r}")
        return [any(value_set.contains(s, c) for s, c in codings_of(inputs))]

    def single(inputs: list[Any]) -> list[Any]:
        # FHIRPath says single() on several items is an error; fhirpathpy returns an error
        # *value* that later functions (exists(), count()) would silently treat as data.
        if len(inputs) > 1:
            raise ValueError(f"single() on {len(inputs)} items")
        return inputs

    return {
        "memberOf": {"fn": member_of, "arity": {1: ["String"]}},
        "single": {"fn": single},
    }
