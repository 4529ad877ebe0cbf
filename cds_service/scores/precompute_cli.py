"""`cds-service precompute`: warm the shared score cache for a population.

    cds-service precompute --ndjson DIR [--scores a,b] [--at DATE] [--tenant T]
    cds-service precompute --fhir-base URL --client-id ID --key FILE [--kid KID] [--group ID]
                           [--type T ...] [--since INSTANT] [--scope S] [...]

The cache is the one the service reads: Redis at CDS_REDIS_URL (required, or the results would
die with the command). From a FHIR server, SMART Backend Services authorization (a private_key_jwt
client assertion, RS384 or ES384) and a Bulk Data `$export` fetch the data.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime, time
from pathlib import Path

import httpx

from cds_service.bulk.auth import TokenSource, scopes_for_types
from cds_service.bulk.errors import BulkError
from cds_service.bulk.export import export_resources
from cds_service.bulk.keys import load_private_key
from cds_service.bulk.ndjson import NdjsonItem, read_ndjson_dir
from cds_service.bulk.progress import ExportProgress
from cds_service.clock import system_clock
from cds_service.config import load_settings
from cds_service.scores import score_names
from cds_service.scores.cache import ScoreCache
from cds_service.scores.precompute import PrecomputeSummary, precompute
from cds_service.scores.provider import ScoreProvider
from cds_service.types import Clock

__all__ = ["add_parser", "run"]

DEFAULT_TYPES = ["Patient", "Observation", "Condition", "MedicationRequest"]


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
    parser.add_argument("--client-id", help="Backend Services client id")
    parser.add_argument("--key", type=Path, help="private key (PEM or JWK) for the assertion")
    parser.add_argument("--kid", help="key id (default: from the JWK, or its thumbprint)")
    parser.add_argument("--group", help="Group id (Group-level export; default Patient-level)")
    parser.add_argument("--type", action="append", dest="types", help="resource type (repeat)")
    parser.add_argument("--since", help="only resources changed since this instant")
    parser.add_argument("--scope", help="scopes to ask for (default: system/<type>.rs)")
    parser.add_argument("--poll-timeout", type=float, default=6 * 3600, metavar="SECONDS")
    parser.add_argument("--scores", help="comma-separated score names (default: all)")
    parser.add_argument("--at", help="as-of date YYYY-MM-DD (default: now)")
    parser.add_argument("--tenant", default="default")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _show_export(event: ExportProgress) -> None:
    _progress(f"[{event.stage}] {event.message}")


async def _from_server(
    args: argparse.Namespace, client: httpx.AsyncClient
) -> AsyncIterator[NdjsonItem]:
    key = load_private_key(args.key, kid=args.kid)
    types = args.types or DEFAULT_TYPES
    scope = args.scope or scopes_for_types(types)
    token = TokenSource(
        client, client_id=args.client_id, key=key, scope=scope, fhir_base=args.fhir_base
    )
    async with aclosing(
        export_resources(
            client,
            args.fhir_base,
            group_id=args.group,
            types=types,
            since=args.since,
            token=token,
            on_progress=_show_export,
            poll_timeout=args.poll_timeout,
        )
    ) as items:
        async for item in items:
            yield item


async def _run(
    args: argparse.Namespace, redis_url: str, scores: list[str], at: datetime, clock: Clock
) -> PrecomputeSummary:
    cache = ScoreCache(redis_url=redis_url, redis_timeout=2.0)
    try:
        if not await cache.ping():
            raise BulkError("Redis at CDS_REDIS_URL does not answer")
        provider = ScoreProvider(cache, clock=clock)
        if args.ndjson is not None:
            items = read_ndjson_dir(args.ndjson)
            return await precompute(
                items, provider, scores=scores, at=at, tenant=args.tenant, progress=_progress
            )
        async with httpx.AsyncClient(timeout=60, follow_redirects=False) as client:
            return await precompute(
                _from_server(args, client),
                provider,
                scores=scores,
                at=at,
                tenant=args.tenant,
                progress=_progress,
            )
    finally:
        await cache.close()


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 when it completed (even with bad lines, which are reported)."""
    settings = load_settings()
    if not settings.redis_url:
        print("precompute needs CDS_REDIS_URL: the cache the service reads", file=sys.stderr)
        return 2
    if args.fhir_base and not (args.client_id and args.key):
        print("--fhir-base needs --client-id and --key", file=sys.stderr)
        return 2
    if args.ndjson is not None and not args.ndjson.is_dir():
        print(f"--ndjson: {args.ndjson} is not a directory", file=sys.stderr)
        return 2
    known = score_names()
    scores = args.scores.split(",") if args.scores else known
    unknown = [s for s in scores if s not in known]
    if unknown:
        print(
            f"--scores: unknown {', '.join(unknown)} (known: {', '.join(known)})", file=sys.stderr
        )
        return 2
    clock: Clock = system_clock  # the command's clock, created once here
    at = clock()
    if args.at:
        try:
            at = datetime.combine(datetime.fromisoformat(args.at).date(), time(23, 59), UTC)
        except ValueError:
            print(f"--at: {args.at!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
            return 2
    try:
        summary = asyncio.run(_run(args, settings.redis_url, scores, at, clock))
    except BulkError as exc:
        print(f"precompute failed: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("precompute interrupted (the export was cancelled)", file=sys.stderr)
        return 130
    print("\n".join(summary.lines()))
    return 0
