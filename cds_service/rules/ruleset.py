"""Loading a rules directory: value sets, services, rules; every problem of every file collected.

Layout (see rules/README.md):

    rules/
      _services.yaml            the services rules are grouped into
      lint.yaml                 which lint validators run, and for which rules (optional)
      _valuesets/<id>.yaml      FHIR ValueSets for memberOf() and `coded:`
      <hook>/<rule-id>.yaml     one rule per file
      <hook>/<rule-id>.test.yaml  its tests

A broken file never stops the others from loading: its problems are reported and it is left out.
Nor does an exception while one is checked (a bug of ours): it is that file's error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cds_service.issues import RuleIssue, internal_error
from cds_service.rules.compiled import CompiledRule, compile_rule
from cds_service.rules.model import Rule, ServiceEntry, ServicesFile
from cds_service.rules.plugin_functions import plugin_functions
from cds_service.rules.valuesets import ValueSet, load_value_sets, member_of_function
from cds_service.terminology.registry import VALUESETS_DIR
from cds_service.validation import field_errors
from cds_service.yamlsource import Located, read_yaml

__all__ = ["LINT_FILE", "SERVICES_FILE", "RuleSet", "load_ruleset", "rule_files"]

log = logging.getLogger(__name__)

SERVICES_FILE = "_services.yaml"
LINT_FILE = "lint.yaml"  # read by `rules lint`; never a rule


@dataclass(slots=True)
class RuleSet:
    """What a rules directory holds, and what is wrong with it."""

    root: Path
    rules: dict[str, CompiledRule] = field(default_factory=dict)
    services: dict[str, ServiceEntry] = field(default_factory=dict)
    value_sets: dict[str, ValueSet] = field(default_factory=dict)
    issues: list[RuleIssue] = field(default_factory=list)

    @property
    def errors(self) -> list[RuleIssue]:
        return [i for i in self.issues if i.severity == "error"]

    def rules_of(self, service: str) -> list[CompiledRule]:
        """The live (not retired) rules of a service, in id order."""
        return [
            r
            for r in sorted(self.rules.values(), key=lambda r: r.id)
            if r.rule.service == service and r.rule.status != "retired"
        ]


def rule_files(root: Path) -> list[Path]:
    """Rule files under `root`: `*.yaml` outside `_`-prefixed names, tests and `lint.yaml`
    excluded."""
    return sorted(
        p
        for p in root.rglob("*.yaml")
        if not p.name.endswith(".test.yaml")
        and p != root / LINT_FILE
        and not any(part.startswith(("_", ".")) for part in p.relative_to(root).parts)
    )


def validation_issues(
    exc: ValidationError, path: Path, located: Located, rule_id: str | None
) -> list[RuleIssue]:
    """pydantic errors as located issues (input values are never quoted)."""
    issues = []
    for error in field_errors(exc):
        line, col = located.position(error.loc)
        issues.append(RuleIssue(path, line, col, error.field, error.message, rule_id))
    return issues


def _load_services(root: Path, issues: list[RuleIssue]) -> dict[str, ServiceEntry]:
    path = root / SERVICES_FILE
    if not path.exists():
        issues.append(RuleIssue(path, 1, 1, "", "missing: list the services rules belong to"))
        return {}
    located, errors = read_yaml(path)
    if located is None:
        issues.extend(RuleIssue(path, e.line, e.col, e.field, e.message) for e in errors)
        return {}
    try:
        return dict(ServicesFile.model_validate(located.value).services)
    except ValidationError as exc:
        issues.extend(validation_issues(exc, path, located, None))
        return {}


def _load_rule(
    path: Path,
    value_sets: dict[str, ValueSet],
    functions: dict[str, Any],
    known_scores: frozenset[str],
) -> tuple[CompiledRule | None, list[RuleIssue]]:
    located, errors = read_yaml(path)
    if located is None:
        return None, [RuleIssue(path, e.line, e.col, e.field, e.message) for e in errors]
    raw = located.value
    rule_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
    try:
        rule = Rule.model_validate(raw)
    except ValidationError as exc:
        return None, validation_issues(exc, path, located, rule_id)
    return compile_rule(
        rule, path, located, value_sets=value_sets, functions=functions, known_scores=known_scores
    )


def load_ruleset(root: Path, known_scores: Iterable[str] = ()) -> RuleSet:
    """Load and check everything under `root`. Never raises for bad content."""
    ruleset = RuleSet(root)
    if not root.is_dir():
        ruleset.issues.append(RuleIssue(root, 1, 1, "", "the rules directory does not exist"))
        return ruleset
    try:
        ruleset.value_sets, vs_issues = load_value_sets(root / VALUESETS_DIR)
    except Exception as exc:  # a bug of ours: the value sets are reported, the rules still load
        vs_issues = [_internal(root / VALUESETS_DIR, exc)]
    ruleset.issues.extend(vs_issues)
    try:
        ruleset.services = _load_services(root, ruleset.issues)
    except Exception as exc:
        ruleset.issues.append(_internal(root / SERVICES_FILE, exc))
    functions = {**member_of_function(ruleset.value_sets), **plugin_functions()}
    scores = frozenset(known_scores)
    # (service, prefetch key) → the first loaded rule that declared it, whose template every
    # other rule of the service must use under that key (a service's prefetch is one set of keys).
    templates: dict[tuple[str, str], CompiledRule] = {}
    for path in rule_files(root):
        try:
            compiled, issues = _load_rule(path, ruleset.value_sets, functions, scores)
        except Exception as exc:  # a bug of ours: this file is reported, the others load
            compiled, issues = None, [_internal(path, exc)]
        ruleset.issues.extend(issues)
        if compiled is None:
            continue
        rule = compiled.rule
        where = RuleIssue(path, 1, 1, "", "", rule.id)
        if rule.id in ruleset.rules:
            other = ruleset.rules[rule.id].path
            ruleset.issues.append(_with(where, "id", f"id also used by {other}"))
            continue
        if rule.service not in ruleset.services:
            ruleset.issues.append(
                _with(
                    where,
                    "service",
                    f"unknown service '{rule.service}' (add it to {SERVICES_FILE})",
                )
            )
            continue
        clash = False
        for key, template in rule.prefetch.items():
            first = templates.get((rule.service, key))
            if first is not None and first.rule.prefetch[key] != template:
                clash = True
                ruleset.issues += _prefetch_clash(rule.service, key, first, compiled)
        if not clash:
            ruleset.rules[rule.id] = compiled
            for key in rule.prefetch:
                templates.setdefault((rule.service, key), compiled)
    return ruleset


def _key_issue(rule: CompiledRule, key: str, message: str) -> RuleIssue:
    """An issue at the line of prefetch key `key` in `rule`'s file."""
    line, col = rule.source.position(("prefetch", key)) if rule.source else (1, 1)
    return RuleIssue(rule.path, line, col, f"prefetch.{key}", message, rule.id)


def _prefetch_clash(
    service: str, key: str, first: CompiledRule, other: CompiledRule
) -> list[RuleIssue]:
    """Two rules of one service giving prefetch key `key` different templates: reported at the
    key in each file (the first rule keeps loading, `other` is left out)."""
    fix = "use another key or the same template (prefetch keys are shared by a service's rules)"
    return [
        _key_issue(
            first,
            key,
            f"service '{service}' key '{key}' is given another template, "
            f"{other.rule.prefetch[key]!r}, by rule {other.id} ({other.path}); {fix}",
        ),
        _key_issue(
            other,
            key,
            f"service '{service}' already uses key '{key}' for {first.rule.prefetch[key]!r} "
            f"(rule {first.id}, {first.path}); {fix}",
        ),
    ]


def _internal(path: Path, exc: Exception) -> RuleIssue:
    """An exception raised while `path` was loaded, as that file's error (and logged in full)."""
    log.error("loading %s failed", path, exc_info=exc)
    return RuleIssue(path, 1, 1, "", internal_error(exc))


def _with(base: RuleIssue, field_name: str, message: str) -> RuleIssue:
    return RuleIssue(base.path, base.line, base.col, field_name, message, base.rule_id)
