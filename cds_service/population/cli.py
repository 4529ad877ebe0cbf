"""`cds-service rules simulate SOURCE`: what the rules would do on a population, before go-live.

    cds-service rules simulate DIR [--rules DIR] [--hook patient-view|encounter-start]
                                   [--format table|json] [--out FILE]
                                   [--max-card-rate 0.15] [--fail-over]

DIR is a Bulk Data export (NDJSON, `.ndjson` or `.ndjson.gz`). At the start of each record's
last encounter the patient's chart is opened (patient-view, the default) or that encounter
checked in (encounter-start), and every service of the hook is called through the evaluation
pipeline the HTTP route uses. The report gives each service's card rate (calls
with a card) and each rule's outcomes. `--fail-over` exits 1 when a service's card rate is above
`--max-card-rate` or any rule errors, so CI can gate a rule change on its population effect.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from cds_service.config import default_rules_dir
from cds_service.population.records import read_population
from cds_service.population.replay import HOOKS, REPLAY_BUDGET_SECONDS, replay
from cds_service.population.report import Report
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import RuleStats, services_from_rules
from cds_service.scores.sources import ComputedScores
from cds_service.services.builtin import builtin_services

__all__ = ["add_simulate", "simulate"]


def add_simulate(sub: Any) -> None:
    """Register `simulate` under `cds-service rules`."""
    parser = sub.add_parser("simulate", help="replay a population through the services")
    parser.add_argument("source", type=Path, metavar="DIR", help="a Bulk Data NDJSON export")
    parser.add_argument("--rules", type=Path, metavar="DIR", help="rules directory")
    parser.add_argument(
        "--hook", choices=HOOKS, default="patient-view", help="the hook to call (patient-view)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the report there")
    parser.add_argument("--max-card-rate", type=float, default=0.15, metavar="RATE")
    parser.add_argument(
        "--fail-over", action="store_true", help="exit 1 over the rate or on any rule error"
    )
    parser.set_defaults(handler=_run)


def simulate(
    source: Path,
    rules_dir: Path | None = None,
    *,
    hook: str = "patient-view",
    builtins: bool = True,
) -> Report:
    """The `hook` replay of the export in `source` with the rules of `rules_dir`."""
    ruleset = load_ruleset(rules_dir or default_rules_dir(), known_score_names())
    if ruleset.errors:
        listed = "\n".join(str(i) for i in ruleset.errors)
        raise ValueError(f"the rules do not load:\n{listed}")
    services = services_from_rules(
        ruleset, scores=ComputedScores(), stats=RuleStats(), budget_seconds=REPLAY_BUDGET_SECONDS
    )
    if builtins:
        services += builtin_services()
    population = read_population(source)
    for line in population.malformed:
        print(f"skipped {line}", file=sys.stderr)
    if population.unrouted:
        print(f"skipped {population.unrouted} resources that name no patient", file=sys.stderr)
    report = Report(hook=hook, patients=len(population.records))
    return asyncio.run(replay(services, population.records, report))


def _run(args: argparse.Namespace) -> int:
    try:
        report = simulate(args.source, args.rules, hook=args.hook)
    except (OSError, ValueError) as exc:
        print(f"rules simulate: {exc}", file=sys.stderr)
        return 2
    text = report.dumps() if args.format == "json" else report.table()
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    over, failing = report.over(args.max_card_rate), report.failing_rules()
    for service in over:
        rate = report.services[service].rate
        print(f"{service}: card rate {rate:.1%} is over {args.max_card_rate:.0%}", file=sys.stderr)
    for rule in failing:
        print(f"{rule}: errors on the population", file=sys.stderr)
    return 1 if args.fail_over and (over or failing) else 0
