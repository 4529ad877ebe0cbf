"""The HL7 FHIRPath R4 test suite, run against the evaluator rules use.

Each case is checked the way the rule loader checks an expression (`compile_path`, the
`%variables` a rule may read, `unsupported_constructs`) and evaluated with `compile_path` —
fhirpathpy with rules/fhirdates.py installed and rules/conformance.py's function fixes — on its
input resource, with the `%variables` the engine builds for a call. A case ends as:

- passed: the expected result (or an error was expected: a load-time refusal is one);
- failed: a wrong result or an unexpected error;
- refused: the rule loader refuses the expression, so no rule can meet the failure. It is still
  evaluated (a wall-clock `now()`/`today()` as `%now`/`%today`), to show whether it would pass;
- skipped: `mode="strict"` cases (semantic type checking, which fhirpathpy does not offer).

`python -m tests.fhirpath_suite.suite` prints the totals; `--write` writes
docs/fhirpath-conformance.md (`make fhirpath-conformance`); `--check` fails when it is stale.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any, Literal

from fhirpathpy.engine import nodes

from cds_service.rules import fhirpath
from cds_service.rules.conformance import unsupported_constructs
from cds_service.rules.engine import RequestData
from cds_service.rules.fhirpath import FhirPathError, compile_path, parse_expression
from tests.fhirpath_suite.fhir_xml import load_resource
from tests.rules.differential import outcome, same

HERE = Path(__file__).resolve().parent
SUITE = HERE / "tests-fhir-r4.xml"
INPUTS = HERE / "input"
KNOWN_FAILURES = HERE / "known_failures.txt"
DOC = HERE.parents[1] / "docs" / "fhirpath-conformance.md"
# What a rule may read besides its own prefetch keys and bindings (rules/compiled.py).
RULE_VARIABLES = frozenset({"now", "today", "age", "scores"})
CLOCK = {"now()": "%now", "today()": "%today"}

Status = Literal["passed", "failed", "refused", "skipped"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "refused", "skipped")


@dataclass(frozen=True, slots=True)
class Case:
    """One `<test>` of the suite."""

    group: str
    name: str  # unique: a repeated name gets " (2)"
    expression: str
    inputfile: str | None
    outputs: tuple[tuple[str | None, str], ...]
    invalid: str | None = None
    predicate: bool = False
    mode: str | None = None
    ordered: bool = True

    @property
    def id(self) -> str:
        """`group/name`, as pytest and the report show it."""
        return f"{self.group}/{self.name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a case ended, why when it did not pass, and for a refused case whether its
    evaluation would have passed anyway."""

    status: Status
    detail: str = ""
    would_pass: bool | None = None
    # Whether the expression runs as compiled closures (rules/fhirpath_closures.py), and if so
    # whether they gave exactly what fhirpathpy's interpreter gives (value or error).
    compiled: bool = False
    same_as_interpreter: bool | None = None
    not_compiled: str | None = None  # why it runs on fhirpathpy


def load_cases(path: Path = SUITE) -> list[Case]:
    """Every test of the suite, in file order."""
    cases: list[Case] = []
    seen: Counter[str] = Counter()
    for group in ET.parse(path).getroot().iter("group"):
        for test in group:
            if test.tag not in ("test", "modeTest"):
                continue
            expression = test.find("expression")
            assert expression is not None, test.attrib
            seen[test.attrib["name"]] += 1
            count = seen[test.attrib["name"]]
            cases.append(
                Case(
                    group=group.attrib["name"],
                    name=test.attrib["name"] + (f" ({count})" if count > 1 else ""),
                    expression=(expression.text or "").strip(),
                    inputfile=test.attrib.get("inputfile"),
                    outputs=tuple(
                        (o.attrib.get("type"), o.text or "") for o in test.iter("output")
                    ),
                    invalid=expression.attrib.get("invalid"),
                    predicate=test.attrib.get("predicate") == "true",
                    # a <modeTest> names a lenient mode, which is the one fhirpathpy has
                    mode=None
                    if test.tag == "modeTest"
                    else test.attrib.get("mode") or expression.attrib.get("mode"),
                    ordered=test.attrib.get("ordered") != "false",
                )
            )
    return cases


@cache
def _input(name: str) -> dict[str, Any]:
    return load_resource(INPUTS / name)


def _variables() -> dict[str, Any]:
    """`%now`, `%today`… exactly as the engine builds them for a call, from the real clock."""
    return RequestData(context={}, prefetch={}, now=datetime.now(UTC)).variables()


def refusal(expression: str, *, patched: bool = True) -> str | None:
    """Why the rule loader refuses this expression, or None when it accepts it."""
    try:
        compiled = compile_path(expression)
    except FhirPathError as error:
        return str(error)
    except Exception as error:  # fhirpathpy's parser failing in its own way
        return f"{type(error).__name__}: {error}"
    refused = unsupported_constructs(parse_expression(expression)) if patched else []
    if refused:
        return "; ".join(refused)
    unknown = sorted(compiled.variables - RULE_VARIABLES)
    if unknown:
        return f"unknown variable %{unknown[0]}"
    return None


def run_case(case: Case, *, patched: bool = True) -> Outcome:
    """Check and evaluate one case (`patched=False`: fhirpathpy as published, no refusals
    beyond the loader's own)."""
    if case.mode == "strict":
        return Outcome(
            "skipped",
            "strict mode (semantic type checking) is not offered",
            not_compiled="skipped",
        )
    refused = refusal(case.expression, patched=patched)
    expression = case.expression
    if refused is not None and refused.endswith("reads the wall clock; use %now instead"):
        for call, variable in CLOCK.items():
            expression = expression.replace(call, variable)
    compiled = _compiled(case, expression)
    if refused is not None and case.invalid:
        return Outcome("passed", f"error expected ({case.invalid}): {refused}", **compiled)
    passed, detail = _evaluate(case, expression)
    if refused is not None:
        return Outcome("refused", refused, would_pass=passed, **compiled)
    return Outcome("passed" if passed else "failed", detail, **compiled)


def _compiled(case: Case, expression: str) -> dict[str, Any]:
    """Whether the expression compiles to closures, and if so whether they answer as
    fhirpathpy's interpreter does on the case's input."""
    try:
        path = compile_path(expression)
    except Exception as error:
        return {"not_compiled": f"refused: {error}"}
    if not path.compiled or path.interpreted is None:
        return {"not_compiled": path.not_compiled}
    resource = _input(case.inputfile) if case.inputfile else {}
    variables = _variables()
    mine = outcome(path._fn, resource, variables)
    reference = outcome(path.interpreted, resource, variables)
    return {"compiled": True, "same_as_interpreter": same(mine, reference)}


def _evaluate(case: Case, expression: str) -> tuple[bool, str]:
    """(did it give the expected result, what happened when not)."""
    resource = _input(case.inputfile) if case.inputfile else {}
    try:
        result = compile_path(expression)(resource, _variables())
    except Exception as error:
        if case.invalid:
            return True, f"error expected ({case.invalid}): {error}"
        return False, f"raised {type(error).__name__}: {error}"
    if case.invalid:
        return False, f"expected an error ({case.invalid}), got {show(result)}"
    if case.predicate:
        result = [bool(result)]
    if _matches(result, case):
        return True, ""
    expected = ", ".join(f"{kind + ':' if kind else ''}{text}" for kind, text in case.outputs)
    return False, f"expected [{expected}], got {show(result)}"


def _matches(result: list[Any], case: Case) -> bool:
    if len(result) != len(case.outputs):
        return False
    if case.ordered:
        return all(_same(item, *output) for item, output in zip(result, case.outputs, strict=True))
    remaining = list(case.outputs)
    for item in result:
        match = next((output for output in remaining if _same(item, *output)), None)
        if match is None:
            return False
        remaining.remove(match)
    return True


def _same(item: Any, kind: str | None, text: str) -> bool:
    """Does one result item equal one expected output (typed the way the suite types it)?"""
    if kind == "boolean":
        return isinstance(item, bool) and item == (text == "true")
    if kind == "integer":
        return isinstance(item, int) and not isinstance(item, bool) and item == int(text)
    if kind in ("string", "code", "id", "uri"):
        return isinstance(item, str) and item == text
    if text.startswith("@"):  # a date, dateTime or time, compared as written
        written = text[2:] if text.startswith("@T") else text[1:]
        if isinstance(item, nodes.FP_DateTime | nodes.FP_Time):
            return bool(item.asStr == written)
        return isinstance(item, str) and item == written
    if isinstance(item, nodes.FP_Quantity):
        return f"{item.value} {item.unit}" == text
    if isinstance(item, int | float | Decimal) and not isinstance(item, bool):
        try:
            return Decimal(str(item)) == Decimal(text)
        except InvalidOperation:
            return False
    return kind is None and str(item) == text


def show(result: list[Any]) -> str:
    """A result collection as the report prints it."""
    shown = []
    for item in result:
        if isinstance(item, nodes.FP_DateTime | nodes.FP_Time):
            shown.append(f"@{item.asStr}")
        elif isinstance(item, nodes.FP_Quantity):
            shown.append(f"{item.value} {item.unit}")
        else:
            shown.append(repr(item))
    return "[" + ", ".join(shown) + "]"


@contextlib.contextmanager
def unpatched() -> Iterator[None]:
    """fhirpathpy 2.2.4 as published: its own date methods and toString, for the "before".

    Our methods are set on FP_DateTime; fhirpathpy's are on its base class FP_TimeBase."""
    patched = {name: vars(nodes.FP_DateTime)[name] for name in ("plus", "compare", "equals")}
    fixed = fhirpath.FIXED_FUNCTIONS
    for name in patched:
        delattr(nodes.FP_DateTime, name)
    vars(fhirpath)["FIXED_FUNCTIONS"] = {}  # a Final name, swapped for this run only
    try:
        yield
    finally:
        for name, method in patched.items():
            setattr(nodes.FP_DateTime, name, method)
        vars(fhirpath)["FIXED_FUNCTIONS"] = fixed


def run_all(*, patched: bool = True) -> list[tuple[Case, Outcome]]:
    """Every case and its outcome, with our patch (default) or with fhirpathpy alone."""
    cases = load_cases()
    if patched:
        return [(case, run_case(case)) for case in cases]
    with unpatched():
        return [(case, run_case(case, patched=False)) for case in cases]


def known_failures(path: Path = KNOWN_FAILURES) -> dict[str, str]:
    """`group/name: why` lines of the known-failures list (comments and blank lines ignored)."""
    known: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, why = line.partition(": ")
            known[name.strip()] = why.strip()
    return known


def main(argv: list[str] | None = None) -> int:
    """Print the totals, or write/check docs/fhirpath-conformance.md."""
    from tests.fhirpath_suite.report import render

    parser = argparse.ArgumentParser(description="Run the HL7 FHIRPath R4 suite.")
    parser.add_argument("--write", action="store_true", help=f"write docs/{DOC.name}")
    parser.add_argument("--check", action="store_true", help=f"fail when docs/{DOC.name} is stale")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):  # the suite's trace() cases print
        after, before = run_all(), run_all(patched=False)
    text = render(after, before, known_failures())
    if args.write:
        DOC.write_text(text, encoding="utf-8")
    if args.check and DOC.read_text(encoding="utf-8") != text:
        print(f"{DOC} is stale: run `make fhirpath-conformance`", file=sys.stderr)
        return 1
    for label, outcomes in (("fhirpathpy 2.2.4 alone", before), ("with our patch", after)):
        totals = Counter(outcome.status for _, outcome in outcomes)
        print(f"{label}: " + ", ".join(f"{totals[s]} {s}" for s in STATUSES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
