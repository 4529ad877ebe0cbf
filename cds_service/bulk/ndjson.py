"""Reading NDJSON (one FHIR resource per line) as a stream, from files or any byte stream.

Every line becomes one item: an `NdjsonResource` (a JSON object with a string ``resourceType``),
or an `NdjsonProblem` naming the source, the 1-based line number and the reason (invalid JSON, not
an object, no ``resourceType``, line too long) — reading then goes on with the next line. Blank
lines are skipped but counted, so line numbers match what an editor shows.

Lines are split on ``\\n`` only (an optional ``\\r`` before it is dropped): JSON strings may hold
U+2028, U+0085 and the like unescaped, which ``str.splitlines`` (and so ``httpx``'s
``aiter_lines``) would wrongly treat as line ends. Files are read in 1 MiB chunks in a worker
thread, so a large file never sits in memory and the event loop stays free.

A directory's ``*.ndjson`` and ``*.ndjson.gz`` files are read in sorted order. Files named
``log.ndjson`` are skipped: that is the export log some Bulk Data clients write next to the
resources (SMART's sample datasets have one), not FHIR data. Pass ``skip_names=()`` to read them
(every line then becomes a "no resourceType" problem).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Collection
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from cds_service.bulk.errors import BulkError, clean_text

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "EXPORT_LOG_NAMES",
    "NdjsonItem",
    "NdjsonProblem",
    "NdjsonResource",
    "iter_lines",
    "list_ndjson_files",
    "parse_line",
    "read_ndjson_dir",
    "read_ndjson_file",
    "read_ndjson_stream",
]

DEFAULT_MAX_LINE_BYTES = 128 * 1024 * 1024
EXPORT_LOG_NAMES: frozenset[str] = frozenset({"log.ndjson"})
_CHUNK_BYTES = 1024 * 1024
_BOM = b"\xef\xbb\xbf"

ProblemKind = Literal["line", "file", "outcome"]


@dataclass(frozen=True, slots=True)
class NdjsonResource:
    """One FHIR resource and where it came from (a file path or a download URL, and the line)."""

    resource: dict[str, Any]
    source: str
    line: int

    @property
    def resource_type(self) -> str:
        return str(self.resource["resourceType"])


@dataclass(frozen=True, slots=True)
class NdjsonProblem:
    """Something that could not be used, and why.

    kind "line": a bad line; "file": a whole file could not be read or downloaded (``line`` is the
    line it stopped at, 0 when it never started); "outcome": an OperationOutcome the server
    reported in the manifest's ``error``/``outcome`` files (kept in ``outcome``).
    """

    source: str
    line: int
    reason: str
    kind: ProblemKind = "line"
    outcome: dict[str, Any] | None = None


NdjsonItem = NdjsonResource | NdjsonProblem


async def iter_lines(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncGenerator[tuple[int, bytes | None], None]:
    """(line number, bytes) for every line of a byte stream; bytes is None for an overlong line.

    An overlong line is dropped as it streams in, so it never takes more than `max_line_bytes`.
    """
    buffer = bytearray()
    number = 0
    overlong = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            number += 1
            if overlong:
                overlong = False
                yield number, None
            elif buffer:
                buffer += chunk[start:end]
                line = bytes(buffer)
                buffer.clear()
                yield number, (line if len(line) <= max_line_bytes else None)
            else:
                yield number, (chunk[start:end] if end - start <= max_line_bytes else None)
            start = end + 1
        if not overlong and start < len(chunk):
            buffer += chunk[start:]
            if len(buffer) > max_line_bytes:
                overlong = True
                buffer.clear()
    if overlong or buffer:
        yield number + 1, None if overlong else bytes(buffer)


def parse_line(raw: bytes | None, source: str, line: int) -> NdjsonItem | None:
    """One line as a resource or a problem; None for a blank line. None `raw` means overlong."""
    if raw is None:
        return NdjsonProblem(source, line, "line is longer than the limit; skipped")
    if line == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    raw = raw.strip(b" \t\r\n")
    if not raw:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return NdjsonProblem(source, line, f"invalid JSON ({clean_text(str(exc), 120)})")
    if not isinstance(value, dict):
        return NdjsonProblem(source, line, f"not a JSON object but {_json_kind(value)}")
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        return NdjsonProblem(source, line, "no resourceType")
    return NdjsonResource(value, source, line)


async def read_ndjson_stream(
    chunks: AsyncIterable[bytes], source: str, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncGenerator[NdjsonItem, None]:
    """Resources and problems from any stream of bytes (a file, an HTTP download)."""
    async with aclosing(iter_lines(chunks, max_line_bytes=max_line_bytes)) as lines:
        async for number, raw in lines:
            item = parse_line(raw, source, number)
            if item is not None:
                yield item


async def read_ndjson_file(
    path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncGenerator[NdjsonItem, None]:
    """Resources and problems from one ``.ndjson`` (or gzip-compressed ``.ndjson.gz``) file.

    A file that cannot be opened or read ends with a problem of kind "file".
    """
    source = str(path)
    try:
        handle = await asyncio.to_thread(_open, path)
    except OSError as exc:
        yield _file_problem(source, 0, exc)
        return
    counter = _ChunkReader(handle)
    try:
        async with aclosing(
            read_ndjson_stream(counter.chunks(), source, max_line_bytes=max_line_bytes)
        ) as items:
            async for item in items:
                yield item
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        yield _file_problem(source, counter.lines + 1, exc)
    finally:
        handle.close()


def list_ndjson_files(
    directory: Path,
    *,
    recursive: bool = False,
    skip_names: Collection[str] = EXPORT_LOG_NAMES,
) -> list[Path]:
    """The ``*.ndjson`` / ``*.ndjson.gz`` files of `directory`, sorted; BulkError if none exists."""
    if not directory.is_dir():
        raise BulkError(f"{directory} is not a directory")
    found = directory.rglob("*") if recursive else directory.glob("*")
    skip = {name.lower() for name in skip_names}
    files = [
        path
        for path in found
        if path.name.lower().endswith((".ndjson", ".ndjson.gz"))
        and path.name.lower() not in skip
        and path.is_file()
    ]
    return sorted(files, key=lambda p: p.relative_to(directory).as_posix())


async def read_ndjson_dir(
    directory: Path,
    *,
    recursive: bool = False,
    skip_names: Collection[str] = EXPORT_LOG_NAMES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> AsyncGenerator[NdjsonItem, None]:
    """Resources and problems from every NDJSON file of `directory`, file by file, sorted."""
    for path in list_ndjson_files(directory, recursive=recursive, skip_names=skip_names):
        async with aclosing(read_ndjson_file(path, max_line_bytes=max_line_bytes)) as items:
            async for item in items:
                yield item


class _ChunkReader:
    """Reads a file in chunks in a worker thread, counting the complete lines read so far."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.lines = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(self._handle.read, _CHUNK_BYTES):
            self.lines += chunk.count(b"\n")
            yield chunk


def _file_problem(source: str, line: int, exc: BaseException) -> NdjsonProblem:
    reason = f"cannot read the file ({type(exc).__name__}: {clean_text(str(exc), 120)})"
    return NdjsonProblem(source, line, reason, kind="file")


def _open(path: Path) -> BinaryIO:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"
