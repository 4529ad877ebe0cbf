"""Mutants of every shipped rule: the loader and `rules lint` report them, never raise.

Each rule under rules/ (its tests and `_` files aside) is broken eight ways, at places drawn
from a generator seeded with the rule's path, so a failure names its rule and mutant and
reproduces: a character deleted, duplicated or swapped with the next, the file cut short, a
quoted value (an expression) replaced by a broken expression, `: {` inserted, a line indented
differently, a value replaced by YAML that PyYAML cannot build (a tag, an impossible date, an
alias inside itself, deep nesting). Each mutant is written beside the rule's own test file
into a rules directory holding only it, the services and the value sets, and linted
(`lint_rules` loads it with `load_ruleset` first: `report.ruleset` is the loader's answer). Every
issue must have a line, a column and a message, and a rule left out must say why.
"""

from __future__ import annotations

import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cds_service.issues import RuleIssue
from cds_service.rules.lint import lint_rules
from cds_service.rules.ruleset import SERVICES_FILE, rule_files
from cds_service.terminology.registry import VALUESETS_DIR

ROOT = Path(__file__).resolve().parents[2] / "rules"
SHIPPED = [p.relative_to(ROOT) for p in rule_files(ROOT)]

BROKEN_EXPRESSIONS = [
    "%x.frist()",
    "%appointment.start.toString().substring(0, 10",
    "((",
    "iif(true,",
    "'unclosed",
    "%",
    "a.b.",
    "1 +",
    "now()",
    "memberOf(no-quotes)",
    "memberOf('no-such-set')",
    "%scores.nope.value",
    "value.ofType(a = b)",
    "%'name'",
    "@2020-13-45",
    "",
]
YAML_VALUES = [
    "!foo x",
    "2026-02-30",
    "!!int x",
    "!!timestamp x",
    "&a [*a]",
    "[1, [2]]",
    "{a: 1}",
    "null",
    "''",
    "1e999",
    "!!binary aGk=",
    "!!set {a}",
    "*undefined",
    "[" * 150 + "]" * 150,
]
# A quoted one-line value (an expression under `let:`, `fhirpath:`, `where:`; or card text).
QUOTED = re.compile(r'(?m)^[ -]*[A-Za-z_][A-Za-z0-9_]*: "([^"\n]*)"$')
VALUE = re.compile(r"(?m): (\S[^\n]*)$")

Mutation = Callable[[str, random.Random], str]


def delete_char(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    return text[:i] + text[i + 1 :]


def duplicate_char(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text))
    return text[:i] + text[i] + text[i:]


def swap_adjacent(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text) - 1)
    return text[:i] + text[i + 1] + text[i] + text[i + 2 :]


def truncate(text: str, rng: random.Random) -> str:
    return text[: rng.randrange(len(text))]


def break_expression(text: str, rng: random.Random) -> str:
    found = rng.choice(list(QUOTED.finditer(text)))
    return text[: found.start(1)] + rng.choice(BROKEN_EXPRESSIONS) + text[found.end(1) :]


def open_mapping(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + ": {" + text[i:]


def reindent(text: str, rng: random.Random) -> str:
    lines = text.splitlines(keepends=True)
    i = rng.randrange(len(lines))
    stripped = lines[i].lstrip(" ")
    if stripped == lines[i] or rng.random() < 0.5:
        lines[i] = " " * rng.randint(1, 4) + lines[i]
    else:
        lines[i] = stripped
    return "".join(lines)


def yaml_value(text: str, rng: random.Random) -> str:
    found = rng.choice(list(VALUE.finditer(text)))
    return text[: found.start(1)] + rng.choice(YAML_VALUES) + text[found.end(1) :]


MUTATIONS: list[Mutation] = [
    delete_char,
    duplicate_char,
    swap_adjacent,
    truncate,
    break_expression,
    open_mapping,
    reindent,
    yaml_value,
]


def mutants(relative: Path, text: str) -> Iterator[tuple[str, str]]:
    """(mutation name, mutated text) for each mutation, at places seeded by the rule's path."""
    rng = random.Random(str(relative))
    for mutation in MUTATIONS:
        yield mutation.__name__, mutation(text, rng)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rules directory with the shipped services and value sets and no rule."""
    root = tmp_path_factory.mktemp("fuzz") / "rules"
    root.mkdir()
    shutil.copy(ROOT / SERVICES_FILE, root / SERVICES_FILE)
    for directory in (VALUESETS_DIR, "_terminology"):
        shutil.copytree(ROOT / directory, root / directory)
    return root


# Names of our models and of pydantic-core's types: internals an author never wrote.
INTERNAL = re.compile(
    r"constrained-|function-(?:after|before|wrap|plain)|LeafCondition|AllOf|AnyOf|NotOf"
    r"|pydantic|Traceback|object at 0x"
)


def malformed(issue: RuleIssue) -> bool:
    """No place, no message, or a message naming our internals."""
    return (
        issue.line < 1
        or issue.col < 1
        or not issue.message.strip()
        or not str(issue.path)
        or bool(INTERNAL.search(f"{issue.field} {issue.message}"))
    )


@pytest.mark.parametrize("relative", SHIPPED, ids=str)
def test_mutants_of_a_shipped_rule_are_reported_never_raised(scratch: Path, relative: Path) -> None:
    source = ROOT / relative
    target = scratch / relative
    tests = source.with_name(source.stem + ".test.yaml")
    target.parent.mkdir(parents=True, exist_ok=True)
    if tests.is_file():
        shutil.copy(tests, target.with_name(tests.name))
    failures = []
    try:
        for name, text in mutants(relative, source.read_text(encoding="utf-8")):
            target.write_text(text, encoding="utf-8")
            try:
                report = lint_rules(scratch)
            except Exception as exc:
                failures.append(f"{name}: raised {type(exc).__name__}: {exc}")
                continue
            issues = [*report.ruleset.issues, *report.issues]
            failures += [f"{name}: malformed issue {i!r}" for i in issues if malformed(i)]
            if source.stem not in report.ruleset.rules and not any(
                i.path == target and i.severity == "error" for i in report.ruleset.issues
            ):
                failures.append(f"{name}: the rule was left out without an error saying why")
    finally:
        shutil.rmtree(scratch / relative.parts[0])
    assert failures == [], f"{relative}: {len(failures)} mutants failed"
