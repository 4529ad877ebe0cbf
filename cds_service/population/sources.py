"""Where a population comes from, read as a stream of resources and problems.

A source is any iterable of `NdjsonItem` (`cds_service.bulk.ndjson`): a resource with the file
(and line) it came from, or a problem — a malformed line (``file:line``) or file — that the
reader reports and skips. Nothing here holds more than one line (NDJSON) or one Bundle file:

- `ndjson_source`: a Bulk Data export on disk, every ``*.ndjson``/``*.ndjson.gz`` file (several
  per type), read by the bulk package's reader; ``log.ndjson`` and ``manifest.json`` are not
  resources and are not read;
- `bundle_source`: a directory of FHIR Bundles (``*.json``: transaction, batch, collection,
  searchset or document), each entry's resource; a file holding a single resource gives that
  resource. A Bundle is one JSON document, so it is parsed whole, one file at a time;
- `open_source`: whichever of the two a directory holds;
- `export_to_directory`: the boundary for a live ``$export`` — the Backend Services client of
  `cds_service.bulk` downloads the export into a local directory, which is then read as an
  NDJSON export (so a partitioning run never depends on the server staying up).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx
import orjson

from cds_service.bulk.export import DEFAULT_POLL_TIMEOUT, export_resources
from cds_service.bulk.httputil import TokenProvider
from cds_service.bulk.ndjson import (
    NdjsonItem,
    NdjsonProblem,
    NdjsonResource,
    iter_ndjson_dir,
    list_ndjson_files,
)
from cds_service.bulk.progress import ProgressCallback
from cds_service.population.writer import TypedNdjsonWriter

__all__ = [
    "BUNDLE_TYPES",
    "Source",
    "bundle_source",
    "describe",
    "export_to_directory",
    "list_bundle_files",
    "ndjson_source",
    "open_source",
]

#: A population as read: resources (with their file and line) and problems, in a stable order.
Source = Iterable[NdjsonItem]

BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset", "document"})
_NOT_BUNDLES = frozenset({"manifest.json"})


def describe(problem: NdjsonProblem) -> str:
    """``file:line: reason`` (``file: reason`` for a whole file or a Bundle)."""
    where = f"{problem.source}:{problem.line}" if problem.line else problem.source
    return f"{where}: {problem.reason}"


def ndjson_source(directory: Path) -> Iterator[NdjsonItem]:
    """Every resource and problem of the NDJSON files of `directory`, file by file, sorted."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory")
    return iter_ndjson_dir(directory)


def list_bundle_files(directory: Path) -> list[Path]:
    """The ``*.json`` files of `directory` (not ``manifest.json``), sorted."""
    return sorted(
        path
        for path in directory.glob("*.json")
        if path.name.lower() not in _NOT_BUNDLES and path.is_file()
    )


def bundle_source(directory: Path) -> Iterator[NdjsonItem]:
    """Every entry's resource of the Bundles of `directory`, file by file, sorted; a file that is
    not JSON, not a FHIR resource or a Bundle of another type is one problem."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory")
    for path in list_bundle_files(directory):
        yield from _bundle_items(path)


def _bundle_items(path: Path) -> Iterator[NdjsonItem]:
    source = str(path)
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        yield NdjsonProblem(source, 0, f"cannot read the file ({type(exc).__name__})", "file")
        return
    except orjson.JSONDecodeError as exc:
        yield NdjsonProblem(source, 0, f"invalid JSON ({str(exc)[:120]})", "file")
        return
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        yield NdjsonProblem(source, 0, "not a FHIR resource", "file")
        return
    if document["resourceType"] != "Bundle":
        yield NdjsonResource(document, source, 0)
        return
    if document.get("type") not in BUNDLE_TYPES:
        yield NdjsonProblem(source, 0, f"a {document.get('type')!r} Bundle is not read", "file")
        return
    entries = document.get("entry") or []
    if not isinstance(entries, list):
        yield NdjsonProblem(source, 0, "entry is not a list", "file")
        return
    for number, entry in enumerate(entries, start=1):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if _is_outcome_entry(entry):
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            yield NdjsonProblem(source, 0, f"entry {number} holds no FHIR resource")
            continue
        yield NdjsonResource(resource, source, 0)


def _is_outcome_entry(entry: Any) -> bool:
    """A searchset's OperationOutcome about the search, not a resource of the population."""
    search = entry.get("search") if isinstance(entry, dict) else None
    return isinstance(search, dict) and search.get("mode") == "outcome"


def open_source(directory: Path) -> Iterator[NdjsonItem]:
    """`directory` read as an NDJSON export when it has NDJSON files, else as Bundles.

    FileNotFoundError when it is not a directory or holds neither."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory")
    if list_ndjson_files(directory):
        return ndjson_source(directory)
    if list_bundle_files(directory):
        return bundle_source(directory)
    raise FileNotFoundError(
        f"{directory}: no .ndjson or .ndjson.gz files (nor FHIR Bundles as .json files)"
    )


async def export_to_directory(
    client: httpx.AsyncClient,
    fhir_base: str,
    directory: Path,
    *,
    group_id: str | None = None,
    types: Sequence[str] | None = None,
    since: str | None = None,
    token: TokenProvider | None = None,
    on_progress: ProgressCallback | None = None,
    poll_timeout: float = DEFAULT_POLL_TIMEOUT,
) -> list[NdjsonProblem]:
    """Run a Bulk Data ``$export`` and write its resources into `directory` as gzip NDJSON by
    type (``Type.000.ndjson.gz``…, with a ``manifest.json``); returns the problems met (bad
    lines, files that could not be downloaded, the server's OperationOutcomes). Read the
    directory with `ndjson_source` afterwards."""
    problems: list[NdjsonProblem] = []
    with TypedNdjsonWriter(directory) as writer:
        async with aclosing(
            export_resources(
                client,
                fhir_base,
                group_id=group_id,
                types=types,
                since=since,
                token=token,
                on_progress=on_progress,
                poll_timeout=poll_timeout,
            )
        ) as items:
            async for item in items:
                if isinstance(item, NdjsonProblem):
                    problems.append(item)
                    continue
                try:
                    writer.write(item.resource_type, orjson.dumps(item.resource))
                except ValueError as exc:  # a resourceType that cannot name a file
                    problems.append(NdjsonProblem(item.source, item.line, str(exc)))
        writer.write_manifest(request=f"{fhir_base} $export")
    return problems
