"""`cds-service rules …`: the rule author's commands.

    cds-service rules lint [DIR] [--list-validators] [--verbose]  every problem; 0 when clean
    cds-service rules test [DIR] [--run REGEX] [--diff]  run every *.test.yaml
    cds-service rules explain ID (--request FILE | --case FILE[:NAME]) [--rules DIR] [--now ISO]
                                 [--override CODE@WHEN]
    cds-service rules schema [--check] [--output-dir DIR]
    cds-service rules simulate EXPORT [--fail-over] ...  (cds_service/population/cli.py)

DIR defaults to the bundled rules directory (the default of CDS_RULES_DIR). The last line of
`rules test` is always `N passed, M failed` (CI parses it).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cds_service.rules.ruleset import RuleSet

__all__ = ["add_parser", "main", "run"]

DEFAULT_SCHEMA_DIR = Path("openapi")


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    extensions: Sequence[Callable[[Any], None]] = (),
) -> argparse.ArgumentParser:
    """Register `rules` and its subcommands on the `cds-service` command's subparsers;
    `extensions` add subcommands from higher layers (`simulate`), each setting its `handler`."""
    rules = commands.add_parser(
        "rules",
        help="lint, test and explain YAML rules",
        description="Lint, test and explain the YAML rules under a rules directory.",
    )
    sub = rules.add_subparsers(dest="rules_command", required=True, metavar="COMMAND")
    dir_help = "rules directory (default: the bundled rules/, as CDS_RULES_DIR)"

    lint = sub.add_parser("lint", help="report every problem of every rule and test file")
    lint.add_argument("dir", nargs="?", type=Path, metavar="DIR", help=dir_help)
    lint.add_argument(
        "--list-validators",
        action="store_true",
        help="print the id, severity and description of every validator, and lint nothing",
    )
    lint.add_argument(
        "--verbose",
        action="store_true",
        help="also say which expressions run on fhirpathpy rather than compiled, and why",
    )

    test = sub.add_parser("test", help="run the rule tests (*.test.yaml)")
    test.add_argument("dir", nargs="?", type=Path, metavar="DIR", help=dir_help)
    test.add_argument(
        "--run", metavar="REGEX", help="only cases whose '<rule-id>/<case name>' matches"
    )
    test.add_argument("--diff", action="store_true", help="show a diff of expected/actual cards")

    explain = sub.add_parser("explain", help="show bindings, conditions and card for a request")
    explain.add_argument("rule_id", metavar="ID", help="the rule id")
    call = explain.add_mutually_exclusive_group(required=True)
    call.add_argument("--request", type=Path, metavar="FILE", help="CDS Hooks request JSON")
    call.add_argument(
        "--case",
        metavar="FILE[:NAME]",
        help="a rule test case's call, as `rules test` makes it: FILE a *.test.yaml, NAME a case "
        "name (exact, or a unique case-insensitive part of one; optional when FILE has one case)",
    )
    explain.add_argument("--rules", type=Path, metavar="DIR", help=dir_help)
    explain.add_argument(
        "--now", metavar="ISO", help="the frozen %%now (default: the case's now, else the clock)"
    )
    explain.add_argument(
        "--override",
        action="append",
        default=[],
        metavar="CODE@WHEN",
        help="an earlier override of the rule's card for the patient, with that reason code, at "
        "that ISO time (what its suppress: block snoozes on); repeatable",
    )

    schema = sub.add_parser("schema", help="write the JSON Schemas of rule and test files")
    schema.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    schema.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_SCHEMA_DIR,
        metavar="DIR",
        help="where the schemas live (default: openapi/)",
    )
    for extend in extensions:
        extend(sub)
    return rules


def _root(given: Path | None) -> Path:
    if given is not None:
        return given
    from cds_service.config import default_rules_dir

    root = default_rules_dir()
    # Shorter paths in messages when the bundled rules are under the current directory.
    return Path(os.path.relpath(root)) if root.is_relative_to(Path.cwd()) else root


def _lint(args: argparse.Namespace) -> int:
    from cds_service.rules.lint import VALIDATORS, lint_rules

    if args.list_validators:
        width = max(len(v.id) for v in VALIDATORS)
        for validator in VALIDATORS:
            print(f"{validator.id:<{width}}  {validator.severity:<7}  {validator.description}")
        return 0
    report = lint_rules(_root(args.dir))
    for issue in report.issues:
        print(issue)
    if args.verbose:
        _evaluators(report.ruleset)
    print(
        f"{report.rule_count} rules, {len(report.errors)} errors, {len(report.warnings)} warnings"
    )
    return 1 if report.errors else 0


def _evaluators(ruleset: RuleSet) -> None:
    """`lint --verbose`: the expressions that run on fhirpathpy (outside the compiled subset)."""
    from cds_service.rules.compiled import rule_expressions

    total = compiled = 0
    for rule_id in sorted(ruleset.rules):
        for where, path in rule_expressions(ruleset.rules[rule_id]):
            total += 1
            compiled += path.compiled
            if not path.compiled:
                print(
                    f"{where}: {rule_id}: runs on fhirpathpy, not compiled "
                    f"({path.not_compiled}): {' '.join(path.expression.split())}"
                )
    on_fhirpathpy = total - compiled
    print(f"{compiled} of {total} expressions compiled to closures, {on_fhirpathpy} on fhirpathpy")


def _test(args: argparse.Namespace) -> int:
    from cds_service.rules.testing.runner import run_rule_tests

    if args.run:
        try:
            re.compile(args.run)
        except re.error as exc:
            print(f"--run: invalid regular expression: {exc}", file=sys.stderr)
            return 2
    with _quiet_engine():
        report = run_rule_tests(_root(args.dir), pattern=args.run)
    for issue in report.issues:
        print(issue)
    for path in report.broken_files:
        print(f"FAIL {path}: does not load (see the errors above)")
    for result in report.results:
        if result.ok:
            print(f"ok   {result.key}")
        else:
            print(f"FAIL {result.key}")
            for line in result.message(diff=args.diff).splitlines():
                print(f"     {line}" if line else "")
    print(f"{report.passed} passed, {report.failed} failed")
    return 0 if report.ok else 1


@contextlib.contextmanager
def _quiet_engine() -> Iterator[None]:
    """The engine logs a rule's error for operators; the report shows it in full instead."""
    engine = logging.getLogger("cds_service.rules.engine")
    level = engine.level
    engine.setLevel(logging.ERROR)
    try:
        yield
    finally:
        engine.setLevel(level)


def _case_root(given: Path | None, case: str) -> Path:
    """`--case`'s rules directory: `--rules`, else the nearest directory above the test file
    holding `_services.yaml`, else the default."""
    from cds_service.rules.explain import parse_case
    from cds_service.rules.ruleset import SERVICES_FILE

    if given is not None:
        return given
    path = parse_case(case)[0]
    for parent in path.absolute().parents:
        if (parent / SERVICES_FILE).is_file():
            return Path(os.path.relpath(parent)) if parent.is_relative_to(Path.cwd()) else parent
    return _root(None)


def _explain(args: argparse.Namespace) -> int:
    from cds_service.rules.explain import (
        CaseError,
        ExplainError,
        explain,
        explain_case,
        parse_now,
        parse_override,
    )

    try:
        now = parse_now(args.now) if args.now else None
        overrides = [parse_override(text) for text in args.override]
        if args.case is not None:
            root = _case_root(args.rules, args.case)
            text = explain_case(root, args.rule_id, args.case, now=now, overrides=overrides)
        else:
            root = _root(args.rules)
            text = explain(root, args.rule_id, args.request, now=now, overrides=overrides)
    except CaseError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ExplainError as exc:
        print(exc, file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def _schema(args: argparse.Namespace) -> int:
    from cds_service.rules.schema import stale_schemas, write_schemas

    directory: Path = args.output_dir
    if args.check:
        stale = stale_schemas(directory)
        for path in stale:
            print(f"{path} is out of date: run `cds-service rules schema`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(directory):
        print(f"wrote {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the `rules` subcommand parsed by `add_parser`; returns the exit status."""
    handlers = {"lint": _lint, "test": _test, "explain": _explain, "schema": _schema}
    handler = handlers.get(args.rules_command) or args.handler
    result: int = handler(args)
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m cds_service.rules.cli rules …` without the top-level command."""
    parser = argparse.ArgumentParser(prog="cds-service")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
