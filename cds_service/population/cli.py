"""`cds-service rules simulate SOURCE`: what the rules would do on a population, before go-live.

    cds-service rules simulate SOURCE [--at DATE | --from DATE --to DATE] [--hooks H,H]
        [--rules DIR] [--format table|json|html] [--out FILE] [--max-card-rate 0.15]
        [--fail-over] [--record] [--workers N | --scheduler tcp://HOST:8786] [--partitions P]
        [--workdir DIR|URL] [--resume]

SOURCE is a Bulk Data export (NDJSON, `.ndjson` or `.ndjson.gz`, several files per type), a
directory of FHIR Bundles, or the base URL of a FHIR server: then the population is exported
from it first (`$export` with SMART Backend Services: `--client-id`, `--key`, and optionally
`--group`, `--type`, `--since`; see population/export_source.py). It is partitioned by
patient into the work directory and each partition is simulated on Dask (a local cluster of
`--workers` processes, one per CPU by default, or the cluster at `--scheduler`).

Without `--from/--to`, each patient's chart is opened (patient-view) at `--at`, by default at
the start of the record's last encounter, and the other `--hooks` are called at that encounter.
With `--from/--to`, every call the record implies in the window is made: patient-view at each
ambulatory encounter, encounter-start and -discharge, order-select and order-sign for each order
authored, appointment-book for each appointment (`--hooks` narrows them). Each call sees the
record as it stood then, through the evaluation pipeline the HTTP route uses.

The report gives each service's card rate per hook and each rule's outcomes; `--fail-over`
exits 1 when a card rate is above `--max-card-rate` or any rule errors, so CI can gate a rule
change on its population effect. `--record` stores each rule's result under the rule's version in
the database of `CDS_DATABASE_URL`, where the workbench's rule page shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cds_service.bulk.errors import BulkError
from cds_service.config import default_rules_dir
from cds_service.population.engine import Cluster, JobFailed, cluster_from
from cds_service.population.export_source import add_export_arguments, download, export_problem
from cds_service.population.jobs import Source, reusable_layout, run_simulation
from cds_service.population.layout import PartitionError
from cds_service.population.moments import SIMULATED, Window
from cds_service.population.progress import Progress
from cds_service.population.render import html, table
from cds_service.population.report import Report, SimulationReport, render_schema
from cds_service.population.simulate import Options

__all__ = ["add_simulate", "simulate"]

DEFAULT_PARTITIONS = 16


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date or date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _hooks(text: str) -> tuple[str, ...]:
    hooks = tuple(h.strip() for h in text.split(",") if h.strip())
    unknown = [h for h in hooks if h not in SIMULATED]
    if unknown or not hooks:
        raise argparse.ArgumentTypeError(
            f"unknown hook {', '.join(unknown) or '(none)'}: choose from {', '.join(SIMULATED)}"
        )
    return hooks


#: Stores a report's rules under their versions (rules directory, source name); a problem's
#: message or None. The workbench's store, passed in by the command line (a layer above).
Recorder = Callable[[SimulationReport, Path | None, str], str | None]


def add_simulate(sub: Any, recorder: Recorder | None = None) -> None:
    """Register `simulate` under `cds-service rules` (`recorder` serves `--record`)."""
    parser = sub.add_parser("simulate", help="replay a population through the services")
    parser.add_argument(
        "source",
        nargs="?",
        metavar="SOURCE",
        help="an NDJSON export or a directory of Bundles, or a FHIR server's base URL ($export)",
    )
    parser.add_argument(
        "--schema", action="store_true", help="print the JSON Schema of --format json and exit"
    )
    parser.add_argument("--rules", type=Path, metavar="DIR", help="rules directory")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--at", type=_instant, metavar="DATE", help="open every chart then")
    when.add_argument("--from", dest="start", type=_instant, metavar="DATE")
    parser.add_argument("--to", dest="end", type=_instant, metavar="DATE")
    parser.add_argument(
        "--hooks",
        type=_hooks,
        metavar="H,H",
        help="hooks to call (default: patient-view; with --from/--to every simulated hook)",
    )
    parser.add_argument("--format", choices=("table", "json", "html"), default="table")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the report there")
    parser.add_argument("--max-card-rate", type=float, default=0.15, metavar="RATE")
    parser.add_argument(
        "--record",
        action="store_true",
        help="store each rule's result under its version in CDS_DATABASE_URL (workbench)",
    )
    parser.add_argument(
        "--fail-over", action="store_true", help="exit 1 over the rate or on any rule error"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local worker processes")
    where.add_argument("--scheduler", metavar="URL", help="an existing Dask scheduler")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS, metavar="P")
    parser.add_argument("--workdir", metavar="DIR|URL", help="where partitions and results go")
    parser.add_argument(
        "--resume", action="store_true", help="keep the partitions finished in --workdir"
    )
    add_export_arguments(parser, types_help="resource type to export (repeat; default: all)")
    parser.set_defaults(handler=functools.partial(_run, recorder=recorder))


def simulate(
    source: Path,
    rules_dir: Path | None = None,
    *,
    hooks: tuple[str, ...] = ("patient-view",),
    at: datetime | None = None,
    window: Window | None = None,
    builtins: bool = True,
    cluster: Cluster | None = None,
    partitions: int = DEFAULT_PARTITIONS,
    workdir: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> Report:
    """The report of `source` simulated with the rules of `rules_dir` (see the module doc)."""
    options = Options(
        rules_dir=str((rules_dir or default_rules_dir()).resolve()),
        hooks=hooks,
        window=window,
        at=at,
        builtins=builtins,
    )
    with tempfile.TemporaryDirectory(prefix="cds-simulate-") as scratch:
        where = Source(source, workdir or scratch, partitions)
        report, layout = run_simulation(
            where,
            options,
            cluster=cluster or Cluster(),
            resume=resume,
            progress=progress,
            say=lambda text: print(text, file=sys.stderr),
        )
    for line in layout.malformed:
        print(f"skipped {line}", file=sys.stderr)
    if layout.unrouted:
        print(f"skipped {layout.unrouted} resources that name no patient", file=sys.stderr)
    return report


def _run(args: argparse.Namespace, recorder: Recorder | None = None) -> int:
    if args.schema:
        sys.stdout.write(render_schema())
        return 0
    if args.source is None:
        print(
            "rules simulate: SOURCE is required (an NDJSON export, Bundles, or a FHIR server)",
            file=sys.stderr,
        )
        return 2
    if (args.start is None) != (args.end is None):
        print("rules simulate: --from and --to go together", file=sys.stderr)
        return 2
    if args.resume and not args.workdir:
        print("rules simulate: --resume needs the --workdir of the earlier run", file=sys.stderr)
        return 2
    live = args.source.startswith(("https://", "http://"))
    problem = export_problem(args, args.source) if live else None
    if problem is not None:
        print(f"rules simulate: {problem}", file=sys.stderr)
        return 2
    window = Window(args.start, args.end) if args.start is not None else None
    hooks = args.hooks or (SIMULATED if window is not None else ("patient-view",))
    with tempfile.TemporaryDirectory(prefix="cds-simulate-export-") as scratch:
        code, report = _simulate_source(args, live, Path(scratch), hooks, window)
    if report is None:
        return code
    if args.record:
        if recorder is None:
            print("rules simulate: --record is not available here", file=sys.stderr)
            return 2
        name = args.source.rstrip("/").rsplit("/", 1)[-1] or args.source
        problem = recorder(report.model(args.max_card_rate), args.rules, name)
        if problem is not None:
            print(f"rules simulate: --record: {problem}", file=sys.stderr)
            return 2
    return _write_report(args, report)


def _simulate_source(
    args: argparse.Namespace,
    live: bool,
    scratch: Path,
    hooks: tuple[str, ...],
    window: Window | None,
) -> tuple[int, Report | None]:
    """The report, downloading the population first when SOURCE is a FHIR server."""
    source = scratch / "export" if live else Path(args.source)
    try:
        if live:
            reused = args.resume and reusable_layout(Source(source, args.workdir, args.partitions))
            if not reused:
                asyncio.run(download(args, args.source, source, default_types=None))
        report = simulate(
            source,
            args.rules,
            hooks=hooks,
            at=args.at,
            window=window,
            cluster=cluster_from(args.workers, args.scheduler),
            partitions=args.partitions,
            workdir=args.workdir,
            resume=args.resume,
            progress=Progress("simulate"),
        )
    except BulkError as exc:
        print(f"rules simulate: the $export failed: {exc.message}", file=sys.stderr)
        return 2, None
    except (OSError, ValueError, JobFailed, PartitionError) as exc:
        print(f"rules simulate: {exc}", file=sys.stderr)
        return 2, None
    return 0, report


def _write_report(args: argparse.Namespace, report: Report) -> int:
    """The report in its format, to --out or stdout; the exit code of --fail-over."""
    model = report.model(args.max_card_rate)
    if args.format == "json":
        text = model.model_dump_json(by_alias=True, indent=2) + "\n"
    elif args.format == "html":
        name = args.source.rstrip("/").rsplit("/", 1)[-1] or args.source
        text = html(model, title=f"Rule simulation: {name}")
    else:
        text = table(model)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    over, failing = report.over(args.max_card_rate), report.failing_rules()
    for service, hook in over:
        rate = report.services[(service, hook)].rate
        limit = f"{args.max_card_rate:.0%}"
        print(f"{service} ({hook}): card rate {rate:.1%} is over {limit}", file=sys.stderr)
    for rule in failing:
        print(f"{rule}: errors on the population", file=sys.stderr)
    return 1 if args.fail_over and (over or failing) else 0
