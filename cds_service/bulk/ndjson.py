"""Reading NDJSON (one FHIR resource per line) as a stream, from files or any byte stream.

Every line becomes one item: an `NdjsonResource` (a JSON object with a string ``resourceType``),
or an `NdjsonProblem` naming the source, the 1-based line number and the reason (invalid JSON, not
an object, no ``resourceType``, line too long, nested deeper than `DEFAULT_MAX_DEPTH` levels,
which the scores' walkers could not follow) — reading then goes on with the next line. Blank
lines are skipped but counted, so line numbers match what an editor shows.

Lines are split on ``\\n`` only (an optional ``\\r`` before it is dropped): JSON strings may hold
U+2028, U+0085 and the like unescaped, which ``str.splitlines`` (and so ``httpx``'s
``aiter_lines``) would wrongly treat as line ends. Files are read in 1 MiB chunks in a worker
thread, so a large file never sits in memory and the event loop stays free.

The ``iter_*`` functions are the same readers without an event loop (the population engine's
partitioning, in worker processes); both cut lines with one `LineSplitter`.

A directory's ``*.ndjson`` and ``*.ndjson.gz`` files are read in sorted order. Files named
``log.ndjson`` are skipped: that is the export log some Bulk Data clients write next to the
resources (SMART's sample datasets have one), not FHIR data. Pass ``skip_names=()`` to read them
(every line then becomes a "no resourceType" problem).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Collection,
    Iterable,
    Iterator,
)
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

from cds_service.bulk.errors import BulkError, clean_text
from cds_service.jsondepth import TooDeep, loads_within

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "EXPORT_LOG_NAMES",
    "LineSplitter",
    "NdjsonItem",
    "NdjsonProblem",
    "NdjsonResource",
    "iter_lines",
    "iter_ndjson_dir",
    "iter_ndjson_file",
    "iter_ndjson_stream",
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


class LineSplitter:
    """Cuts a stream of byte chunks into numbered lines: ``(number, bytes)``, bytes None for a
    line longer than `max_line_bytes` (dropped as it streams in, so it never takes more than the
    limit). The one splitter of the async and the synchronous readers."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._overlong = False
        self.number = 0  # complete lines cut so far

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | None]]:
        """The lines `chunk` completes."""
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self.number += 1
            if self._overlong:
                self._overlong = False
                yield self.number, None
            elif self._buffer:
                self._buffer += chunk[start:end]
                line = bytes(self._buffer)
                self._buffer.clear()
                yield self.number, (line if len(line) <= self._max else None)
            else:
                yield self.number, (chunk[start:end] if end - start <= self._max else None)
            start = end + 1
        if not self._overlong and start < len(chunk):
            self._buffer += chunk[start:]
            if len(self._buffer) > self._max:
                self._overlong = True
                self._buffer.clear()

    def finish(self) -> Iterator[tuple[int, bytes | None]]:
        """The last line, when the stream does not end with a newline."""
        if self._overlong or self._buffer:
            yield self.number + 1, None if self._overlong else bytes(self._buffer)
            self._buffer.clear()
            self._overlong = False


async def iter_lines(
    chunks: AsyncIterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncGenerator[tuple[int, bytes | None], None]:
    """(line number, bytes) for every line of a byte stream; bytes is None for an overlong line.

    An overlong line is dropped as it streams in, so it never takes more than `max_line_bytes`.
    """
    splitter = LineSplitter(max_line_bytes)
    async for chunk in chunks:
        for item in splitter.feed(chunk):
            yield item
    for item in splitter.finish():
        yield item


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
        value = loads_within(raw)
    except TooDeep as exc:
        return NdjsonProblem(source, line, f"{exc}; skipped")
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


def iter_ndjson_stream(
    chunks: Iterable[bytes], source: str, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[NdjsonItem]:
    """The synchronous `read_ndjson_stream`: resources and problems from chunks of bytes."""
    splitter = LineSplitter(max_line_bytes)
    for chunk in chunks:
        for number, raw in splitter.feed(chunk):
            item = parse_line(raw, source, number)
            if item is not None:
                yield item
    for number, raw in splitter.finish():
        item = parse_line(raw, source, number)
        if item is not None:
            yield item


def iter_ndjson_file(
    path: Path, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[NdjsonItem]:
    """The synchronous `read_ndjson_file` (for worker processes and threads that have no event
    loop): a file that cannot be opened or read ends with a problem of kind "file"."""
    source = str(path)
    try:
        handle = _open(path)
    except OSError as exc:
        yield _file_problem(source, 0, exc)
        return
    counter = _ChunkReader(handle)
    try:
        yield from iter_ndjson_stream(counter.sync_chunks(), source, max_line_bytes=max_line_bytes)
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        yield _file_problem(source, counter.lines + 1, exc)
    finally:
        handle.close()


def iter_ndjson_dir(
    directory: Path,
    *,
    recursive: bool = False,
    skip_names: Collection[str] = EXPORT_LOG_NAMES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[NdjsonItem]:
    """The synchronous `read_ndjson_dir`: every NDJSON file of `directory`, sorted."""
    for path in list_ndjson_files(directory, recursive=recursive, skip_names=skip_names):
        yield from iter_ndjson_file(path, max_line_bytes=max_line_bytes)


class _ChunkReader:
    """Reads a file in chunks in a worker thread, counting the complete lines read so far."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.lines = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await asyncio.to_thread(self._handle.read, _CHUNK_BYTES):
            self.lines += chunk.count(b"\n")
            yield chunk

    def sync_chunks(self) -> Iterator[bytes]:
        while chunk := self._handle.read(_CHUNK_BYTES):
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
