"""`cds-service population generate`: a synthetic population resampled from a real export.

    cds-service population generate --from DIR --patients N --out DIR [--seed S]
                                    [--max-lines L]

DIR is a Bulk Data export (NDJSON, `.ndjson` or `.ndjson.gz`) or a directory of FHIR Bundles.
The output is a Bulk Data export on disk (gzip NDJSON by type, `manifest.json`) that `rules
simulate` and the population engine read; see `cds_service/population/generate.py`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cds_service.population.generate import generate
from cds_service.population.writer import DEFAULT_MAX_LINES

__all__ = ["add_parser", "run"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `population generate` on the main command."""
    population = commands.add_parser("population", help="synthetic populations")
    sub = population.add_subparsers(dest="population_command", required=True)
    parser = sub.add_parser(
        "generate",
        help="resample an export's patients into N synthetic ones",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--from", dest="source", type=Path, required=True, metavar="DIR", help="the export"
    )
    parser.add_argument("--patients", type=_positive, required=True, metavar="N")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--max-lines",
        type=_positive,
        default=DEFAULT_MAX_LINES,
        metavar="L",
        help=f"lines per file before the next one of the type (default {DEFAULT_MAX_LINES})",
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 on success, 2 when the source cannot be read."""
    if args.out.exists() and any(args.out.iterdir()):
        print(f"population generate: {args.out} is not empty", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        summary = generate(
            args.source,
            args.out,
            args.patients,
            seed=args.seed,
            max_lines=args.max_lines,
            progress=_progress,
        )
    except (OSError, ValueError) as exc:
        print(f"population generate: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(
        f"{summary.patients} patients from {summary.templates} templates: "
        f"{summary.resources} resources and {summary.shared} shared in {summary.files} files "
        f"under {args.out} ({seconds:.1f} s)"
    )
    if summary.skipped:
        print(f"skipped {summary.skipped} resources of no valid type", file=sys.stderr)
    return 0
