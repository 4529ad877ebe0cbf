"""A live Bulk Data `$export` as a population job's source: the command-line options and the
download into a local directory that the partitioning then reads.

Both population commands take it (`precompute --fhir-base URL`, `rules simulate URL`): SMART
Backend Services authorization (a private_key_jwt client assertion, RS384 or ES384, with
`--client-id` and `--key`), a Patient- or Group-level `$export` of the chosen types, and the
files downloaded as they are listed, each problem (an OperationOutcome file, a bad line)
reported and the rest kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

from cds_service.bulk.auth import TokenSource, scopes_for_types
from cds_service.bulk.keys import load_private_key
from cds_service.bulk.progress import ExportProgress
from cds_service.population.sources import describe, export_to_directory

__all__ = ["add_export_arguments", "download", "export_problem", "http_client"]


def add_export_arguments(parser: argparse.ArgumentParser, *, types_help: str) -> None:
    """The options of a live `$export` (used when the source is a FHIR server)."""
    group = parser.add_argument_group("a live $export (SMART Backend Services)")
    group.add_argument("--client-id", help="Backend Services client id")
    group.add_argument("--key", type=Path, help="private key (PEM or JWK) for the assertion")
    group.add_argument("--kid", help="key id (default: from the JWK, or its thumbprint)")
    group.add_argument("--group", help="Group id (Group-level export; default Patient-level)")
    group.add_argument("--type", action="append", dest="types", help=types_help)
    group.add_argument("--since", help="only resources changed since this instant")
    group.add_argument("--scope", help="scopes to ask for (default: system/<type>.rs)")
    group.add_argument("--poll-timeout", type=float, default=6 * 3600, metavar="SECONDS")


def export_problem(args: argparse.Namespace, base: str) -> str | None:
    """What is wrong with the export options for the FHIR server `base`, or None."""
    if not base.startswith(("https://", "http://")):
        return f"{base!r} is not an http(s) URL"
    if not (args.client_id and args.key):
        return "a $export needs --client-id and --key"
    if not args.key.is_file():
        return f"--key: {args.key} is not a file"
    return None


def http_client() -> httpx.AsyncClient:
    """The client of the export (no redirects are followed: a token never leaves its host)."""
    return httpx.AsyncClient(timeout=60, follow_redirects=False)


def _show(event: ExportProgress) -> None:
    print(f"[{event.stage}] {event.message}", file=sys.stderr, flush=True)


async def download(
    args: argparse.Namespace,
    base: str,
    directory: Path,
    *,
    default_types: Sequence[str] | None,
    on_progress: Callable[[ExportProgress], None] = _show,
) -> None:
    """The `$export` of `base` into `directory` (problems reported on stderr as they come).
    `default_types` when `--type` is not given (None: every type the server exports)."""
    key = load_private_key(args.key, kid=args.kid)
    types = list(args.types or default_types or [])
    scope = args.scope or (scopes_for_types(types) if types else "system/*.rs")
    async with http_client() as client:
        token = TokenSource(client, client_id=args.client_id, key=key, scope=scope, fhir_base=base)
        problems = await export_to_directory(
            client,
            base,
            directory,
            group_id=args.group,
            types=types or None,
            since=args.since,
            token=token,
            on_progress=on_progress,
            poll_timeout=args.poll_timeout,
        )
    for problem in problems:
        print(describe(problem), file=sys.stderr)
