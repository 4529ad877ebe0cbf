"""Writing resources as a Bulk Data export on disk: gzip NDJSON by type, and a manifest.

`TypedNdjsonWriter` keeps one open file per resource type (``Observation.000.ndjson.gz``) and
starts the next (``.001``) after `max_lines` lines, so memory is one compressor per type
whatever the size; `write_manifest` then writes a Bulk-style ``manifest.json`` listing each
file, its type and count. Files are compressed without a timestamp or name in the gzip header:
the same lines give the same bytes.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Protocol

import orjson

from cds_service.clock import system_clock

__all__ = [
    "DEFAULT_MAX_LINES",
    "TYPE_NAME",
    "LineBuffer",
    "TypedNdjsonWriter",
    "Writable",
    "WrittenFile",
    "deterministic_gzip",
]

DEFAULT_MAX_LINES = 100_000
#: What a resource type name may be (it names files).
TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{0,63}")


class Writable(Protocol):
    """What a gzip writer needs of the file under it."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


def deterministic_gzip(handle: Writable, compresslevel: int) -> gzip.GzipFile:
    """A gzip writer over `handle` whose header holds no time nor name (reproducible bytes)."""
    return gzip.GzipFile(
        filename="", mode="wb", fileobj=handle, compresslevel=compresslevel, mtime=0
    )


@dataclass(slots=True)
class WrittenFile:
    """One file of the output: its resource type, name (in the directory) and line count."""

    resource_type: str
    name: str
    count: int = 0


_BUFFER_BYTES = 128 * 1024  # lines gathered before they go to the compressor


class LineBuffer:
    """Lines gathered into writes of about `_BUFFER_BYTES` (a compressor's call is costly)."""

    __slots__ = ("_buffer", "_buffered", "_out")

    def __init__(self, out: Writable) -> None:
        self._out = out
        self._buffer: list[bytes] = []
        self._buffered = 0

    def write_line(self, line: bytes) -> None:
        """`line` (without its newline) and a newline."""
        self._buffer.append(line)
        self._buffer.append(b"\n")
        self._buffered += len(line) + 1
        if self._buffered >= _BUFFER_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._out.write(b"".join(self._buffer))
            self._buffer.clear()
            self._buffered = 0


class _Open:
    __slots__ = ("file", "gzip", "handle", "lines")

    def __init__(self, file: WrittenFile, handle: BinaryIO, compresslevel: int) -> None:
        self.file = file
        self.handle = handle
        self.gzip = deterministic_gzip(handle, compresslevel)
        self.lines = LineBuffer(self.gzip)

    def write(self, line: bytes) -> None:
        self.lines.write_line(line)
        self.file.count += 1

    def close(self) -> None:
        self.lines.flush()
        self.gzip.close()
        self.handle.close()


class TypedNdjsonWriter:
    """Lines of FHIR resources into ``<Type>.<nnn>.ndjson.gz`` files of `directory`."""

    def __init__(
        self, directory: Path, *, max_lines: int = DEFAULT_MAX_LINES, compresslevel: int = 6
    ) -> None:
        if max_lines < 1:
            raise ValueError("max_lines must be at least 1")
        self.directory = directory
        self.max_lines = max_lines
        self.compresslevel = compresslevel
        self.files: list[WrittenFile] = []
        self._open: dict[str, _Open] = {}
        self._next: dict[str, int] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, resource_type: str, line: bytes) -> None:
        """One resource (its JSON, without the newline). ValueError for a type that is not a
        FHIR resource type name (it would name the file)."""
        current = self._open.get(resource_type)
        if current is None or current.file.count >= self.max_lines:
            if current is not None:
                current.close()
            current = self._start(resource_type)
        current.write(line)

    def _start(self, resource_type: str) -> _Open:
        if not TYPE_NAME.fullmatch(resource_type):
            raise ValueError(f"{resource_type[:80]!r} is not a FHIR resource type")
        number = self._next.get(resource_type, 0)
        self._next[resource_type] = number + 1
        file = WrittenFile(resource_type, f"{resource_type}.{number:03d}.ndjson.gz")
        self.files.append(file)
        opened = _Open(file, (self.directory / file.name).open("wb"), self.compresslevel)
        self._open[resource_type] = opened
        return opened

    def close(self) -> None:
        for opened in self._open.values():
            opened.close()
        self._open.clear()

    def write_manifest(self, *, request: str, transaction_time: str | None = None) -> Path:
        """Close the files and write ``manifest.json`` (relative file names as `url`); the
        transaction time is now when not given."""
        self.close()
        output = [
            {"type": f.resource_type, "url": f.name, "count": f.count}
            for f in sorted(self.files, key=lambda f: (f.resource_type, f.name))
        ]
        manifest = {
            "transactionTime": transaction_time
            or system_clock().astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "request": request,
            "requiresAccessToken": False,
            "output": output,
            "error": [],
        }
        path = self.directory / "manifest.json"
        path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
        return path

    def __enter__(self) -> TypedNdjsonWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
