"""`cds-service precompute`: warm the shared score cache for a population, on the population engine.

    cds-service precompute --ndjson DIR [--scores a,b] [--at DATE] [--tenant T]
                           [--workers N | --scheduler URL] [--partitions P] [--workdir DIR|URL]
                           [--resume]
    cds-service precompute --fhir-base URL --client-id ID --key FILE [--kid KID] [--group ID]
                           [--type T ...] [--since INSTANT] [--scope S] [...]

The cache is the one the service reads: Redis at CDS_REDIS_URL (required, or the results would
die with the command). `--ndjson` reads a Bulk Data export (or a directory of Bundles); from a
FHIR server, SMART Backend Services authorization (a private_key_jwt client assertion, RS384 or
ES384) and a Bulk Data `$export` download the data into the work directory first. The
population is partitioned by patient and scored on Dask (population/precompute.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import UTC, datetime, time
from pathlib import Path

from cds_service.bulk.errors import BulkError
from cds_service.clock import system_clock
from cds_service.config import load_settings
from cds_service.population.engine import JobFailed, cluster_from
from cds_service.population.export_source import add_export_arguments, download, export_problem
from cds_service.population.jobs import Source, reusable_layout
from cds_service.population.layout import PartitionError
from cds_service.population.precompute import PrecomputeOptions
from cds_service.population.precompute import run as precompute
from cds_service.population.progress import Progress
from cds_service.scores import score_names
from cds_service.scores.fhir_inputs import RECORD_TYPES
from cds_service.types import Clock

__all__ = ["add_parser", "run"]

#: What is exported without --type: the types the scores read.
DEFAULT = ", ".join(sorted(RECORD_TYPES))


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `precompute` on the main command."""
    parser = commands.add_parser(
        "precompute",
        help="warm the score cache for a population (NDJSON or Bulk Data)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ndjson", type=Path, metavar="DIR", help="a Bulk Data export on disk")
    source.add_argument("--fhir-base", metavar="URL", help="FHIR server to $export from")
    add_export_arguments(parser, types_help=f"resource type (repeat; default {DEFAULT})")
    parser.add_argument("--scores", help="comma-separated score names (default: all)")
    parser.add_argument("--at", help="as-of date YYYY-MM-DD (default: now)")
    parser.add_argument("--tenant", default="default")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N", help="local worker processes")
    where.add_argument("--scheduler", metavar="URL", help="an existing Dask scheduler")
    parser.add_argument("--partitions", type=int, default=16, metavar="P")
    parser.add_argument("--workdir", metavar="DIR|URL", help="where partitions and results go")
    parser.add_argument(
        "--resume", action="store_true", help="keep the partitions finished in --workdir"
    )


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _at(text: str | None, clock: Clock) -> datetime | None:
    if not text:
        return clock()
    try:
        return datetime.combine(datetime.fromisoformat(text).date(), time(23, 59), UTC)
    except ValueError:
        return None


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 when every partition was scored (bad lines are reported, not fatal)."""
    settings = load_settings()
    if not settings.redis_url:
        print("precompute needs CDS_REDIS_URL: the cache the service reads", file=sys.stderr)
        return 2
    problem = export_problem(args, args.fhir_base) if args.fhir_base else None
    if problem is not None:
        print(f"--fhir-base: {problem}", file=sys.stderr)
        return 2
    if args.ndjson is not None and not args.ndjson.is_dir():
        print(f"--ndjson: {args.ndjson} is not a directory", file=sys.stderr)
        return 2
    if args.resume and not args.workdir:
        print("--resume needs the --workdir of the earlier run", file=sys.stderr)
        return 2
    known = score_names()
    scores = args.scores.split(",") if args.scores else known
    unknown = [s for s in scores if s not in known]
    if unknown:
        print(
            f"--scores: unknown {', '.join(unknown)} (known: {', '.join(known)})", file=sys.stderr
        )
        return 2
    clock: Clock = system_clock  # the command's clock, read once here
    started = clock()
    at = _at(args.at, clock)
    if at is None:
        print(f"--at: {args.at!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    options = PrecomputeOptions(
        redis_url=settings.redis_url,
        scores=tuple(scores),
        at=at,
        computed_at=started,
        tenant=args.tenant,
        ttl_seconds=settings.score_cache_ttl_seconds,
    )
    cluster = cluster_from(args.workers, args.scheduler)
    with tempfile.TemporaryDirectory(prefix="cds-precompute-") as scratch:
        workdir = args.workdir or scratch
        try:
            directory = args.ndjson or Path(scratch) / "export"
            source = Source(directory, workdir, args.partitions)
            if args.ndjson is None and not (args.resume and reusable_layout(source)):
                asyncio.run(
                    download(args, args.fhir_base, directory, default_types=sorted(RECORD_TYPES))
                )
            summary, layout = precompute(
                source,
                options,
                cluster=cluster,
                resume=args.resume,
                progress=Progress("precompute"),
                say=_progress,
            )
        except BulkError as exc:
            print(f"precompute failed: {exc.message}", file=sys.stderr)
            return 1
        except (ConnectionError, JobFailed) as exc:
            print(
                f"precompute failed: {exc}. The cache may hold part of the population; run "
                "again (with --workdir and --resume to keep the partitions that finished).",
                file=sys.stderr,
            )
            return 1
        except (OSError, PartitionError) as exc:
            print(f"precompute failed: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("precompute interrupted", file=sys.stderr)
            return 130
    for line in layout.malformed:
        print(line, file=sys.stderr)
    for line in summary.first_errors:
        print(line, file=sys.stderr)
    print("\n".join(summary.lines()))
    return 0
