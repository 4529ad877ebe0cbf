"""`rules/lint.yaml`: which validators run, and which rules are excluded from which.

    validators: [all, -rule-outside-hook-directory]  # in order: all, an id, or -id to drop one
    exclusions:                                     # rule id → validators it is excluded from
      legacy-dose-check: [rule-without-tests]       # say why, in a comment like this one

Without the file every validator runs on every rule. An unknown validator or rule id is an error:
a typo must not silently leave a check running, or off.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, StrictStr, ValidationError

from cds_service.issues import RuleIssue
from cds_service.rules.model import KEBAB, Authored, Kebab
from cds_service.rules.ruleset import LINT_FILE, validation_issues
from cds_service.yamlsource import Located, field_path, read_yaml

__all__ = ["LintConfig", "LintFile", "read_lint_config"]

ALL = "all"
Selector = Annotated[StrictStr, Field(pattern="^-?" + KEBAB.pattern.removeprefix("^"))]


class LintFile(Authored):
    """The file as written."""

    validators: list[Selector] = Field(
        default_factory=lambda: [ALL],
        description="Applied in order: `all`, a validator id (on), `-id` (off)",
    )
    exclusions: dict[Kebab, list[Kebab]] = Field(
        default_factory=dict, description="Rule id → ids of validators that skip that rule"
    )


@dataclass(frozen=True, slots=True)
class LintConfig:
    """What the file means: the validators that run, and the rules each must skip."""

    enabled: frozenset[str]
    exclusions: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def excludes(self, issue: RuleIssue) -> bool:
        """Whether `issue` is suppressed by an exclusion of its rule."""
        skipped = self.exclusions.get(issue.rule_id or "", frozenset())
        return issue.validator is not None and issue.validator in skipped


class _Reader:
    def __init__(self, path: Path, located: Located, known: Sequence[str]) -> None:
        self.path = path
        self.located = located
        self.known = known
        self.issues: list[RuleIssue] = []

    def issue(self, loc: tuple[str | int, ...], message: str) -> None:
        line, col = self.located.position(loc)
        self.issues.append(RuleIssue(self.path, line, col, field_path(loc), message))

    def unknown(self, loc: tuple[str | int, ...], name: str) -> None:
        self.issue(loc, f"unknown validator '{name}' (known: {', '.join(self.known)})")

    def enabled(self, selectors: list[str]) -> frozenset[str]:
        on: set[str] = set()
        for index, selector in enumerate(selectors):
            name = selector.removeprefix("-")
            chosen = set(self.known) if name == ALL else {name}
            if name != ALL and name not in self.known:
                self.unknown(("validators", index), name)
            elif selector.startswith("-"):
                on -= chosen
            else:
                on |= chosen
        return frozenset(on)

    def exclusions(
        self, exclusions: dict[str, list[str]], rule_ids: Collection[str]
    ) -> dict[str, frozenset[str]]:
        out = {}
        for rule_id, names in exclusions.items():
            if rule_id not in rule_ids:
                self.issue(("exclusions", rule_id), f"no rule '{rule_id}' in this directory")
            for index, name in enumerate(names):
                if name not in self.known:
                    self.unknown(("exclusions", rule_id, index), name)
            out[rule_id] = frozenset(names)
        return out


def read_lint_config(
    root: Path, known: Sequence[str], rule_ids: Collection[str]
) -> tuple[LintConfig, list[RuleIssue]]:
    """Read `root/lint.yaml` against the `known` validator ids and the rules on disk.

    Returns the configuration (every validator, no exclusions, when the file is absent or
    invalid) and the file's problems, located like rule problems.
    """
    path = root / LINT_FILE
    everything = LintConfig(frozenset(known))
    if not path.is_file():
        return everything, []
    located, errors = read_yaml(path)
    if located is None:
        return everything, [RuleIssue(path, e.line, e.col, e.field, e.message) for e in errors]
    try:
        written = LintFile.model_validate(located.value or {})
    except ValidationError as exc:
        return everything, validation_issues(exc, path, located, None)
    reader = _Reader(path, located, known)
    enabled = reader.enabled(written.validators)
    config = LintConfig(enabled, reader.exclusions(written.exclusions, rule_ids))
    return config, reader.issues
