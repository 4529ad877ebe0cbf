"""A population hash-partitioned by patient, on disk, for the engine to process partition by
partition.

    layout = partition(Path("export/"), "s3://bucket/run-1", partitions=64)
    for patient_id, resources in read_partition("s3://bucket/run-1", 7):
        ...                                   # one patient's record at a time, Patient first

`partition` reads a source (`cds_service.population.sources`) once, routes every resource with
the one routing (`cds_service.bulk.routing`), and writes under the work directory (a local path
or an fsspec URL: ``file://``, ``memory://``, ``s3://`` when s3fs is installed):

- ``part-00000/`` … one folder per partition: a patient goes to partition
  ``blake2b-64(UTF-8 id) mod P`` (stable across processes and machines, unlike ``hash()``);
  in it one gzip NDJSON file per resource type (``Observation.ndjson.gz``), in which patients
  follow each other by id, each patient's resources of that type contiguous, in the order
  they were read; and ``patients.ndjson``: each record's patient id and how many resources of
  each type it has (``{"patient": "p1", "counts": {"Patient": 1, "Observation": 212}}``), in
  file order (a resource naming only an encounter does not say its patient, so the files
  cannot). A job opens only the types it reads: precompute never decompresses the Claims
  and ExplanationOfBenefits that are most of a Synthea record;
- ``shared.ndjson.gz``: the resources no one patient owns, once each (first occurrence of each
  ``Type/id``), in the order read;
- ``layout.json``, written last: P, the files, patients and resources per partition (and how
  many records have no Patient resource), each file's SHA-256 and count, the malformed lines
  (``file:line: reason``, the first `MAX_MALFORMED_LISTED`, all counted; a resourceType that
  is not a type name is one, since it names a file), the unrouted count.

The output is a function of the input alone: the same source (same files, same order) gives
byte-identical partitions (gzip headers carry no time or name), so a resumed run can trust the
partitions a previous one finished and check them against the layout's SHA-256.

Memory: neither step holds more than one patient's record plus bounded buffers. Partitioning
holds not even one record: it spills to one local SQLite database (`spill_dir`, a temporary
directory by default; it needs about the population's uncompressed size on local disk and is
deleted at the end), with a small page cache (`_CACHE_KIB`):

- one table per partition receives the lines routed to a patient, with (patient, rank, seq):
  rank 0 for the Patient, seq the reading order; rows are inserted a bounded batch at a time;
- a resource naming only an Encounter goes to a ``pending`` table and each Encounter's
  (encounter id, patient id) pair to an ``encounter`` table keyed by encounter id, so the
  encounter→patient map lives in SQLite's on-disk B-tree, never in a Python dict; once the
  input is read the pending rows are joined to it a batch at a time and moved to their
  partition (those whose encounter is unknown are counted as unrouted);
- a partition's files are then written from ``SELECT … ORDER BY patient, rank, seq`` on its
  table: SQLite's external merge sort groups the patients (bounded memory, temporary files),
  and each line streams to its type's gzip file (one compressor per type is open).

`read_partition` streams the patients file and the wanted types' files side by side: one
record in memory at a time, the Patient first, then the other types by name.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from cds_service.bulk.ndjson import NdjsonItem, NdjsonProblem
from cds_service.bulk.routing import route
from cds_service.population.layout import (
    LAYOUT_NAME,
    MAX_MALFORMED_LISTED,
    SHARED_NAME,
    Layout,
    PartitionError,
    PartitionInfo,
    TypeFile,
    WorkDir,
    filesystem,
    partition_of,
    read_layout,
    write_layout,
)
from cds_service.population.sources import describe, open_source
from cds_service.population.spill import Spill
from cds_service.population.writer import TYPE_NAME, LineBuffer, Writable, deterministic_gzip

__all__ = [
    "MAX_PARTITIONS",
    "Layout",
    "PartitionError",
    "PartitionInfo",
    "WorkDir",
    "partition",
    "partition_of",
    "read_layout",
    "read_partition",
    "read_shared",
]

MAX_PARTITIONS = 65_536
_READ_CHUNK = 1024 * 1024


class _HashingFile:
    """Passes writes through to a file, hashing them."""

    def __init__(self, handle: Writable) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.sha256.update(data)
        self._handle.write(data)
        return len(data)

    def flush(self) -> None:
        self._handle.flush()


def _json(resource: dict[str, Any]) -> bytes:
    """The resource's JSON in a bytes object of its own size: orjson hands over its working
    buffer (4 KiB for a short line, up to tens of KiB for a long one), and a batch of those
    would take many times the lines' size."""
    return memoryview(orjson.dumps(resource)).tobytes()


@dataclass(slots=True)
class _Counts:
    read: int = 0
    unrouted: int = 0
    malformed_total: int = 0


def partition(
    source: Path | Iterable[NdjsonItem],
    workdir: WorkDir,
    partitions: int,
    *,
    spill_dir: Path | None = None,
    compresslevel: int = 6,
    progress: Callable[[str], None] | None = None,
) -> Layout:
    """Hash-partition the population of `source` (a directory, read with `open_source`, or any
    stream of items) into `partitions` files under `workdir`; returns the layout written."""
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}")
    items = open_source(source) if isinstance(source, Path) else source
    fs, root = filesystem(workdir)
    fs.makedirs(root, exist_ok=True)
    layout_path = f"{root}/{LAYOUT_NAME}"
    if fs.exists(layout_path):  # a partial rerun must not look finished
        fs.rm(layout_path)
    malformed: list[str] = []
    counts = _Counts()
    with tempfile.TemporaryDirectory(prefix="cds-partition-", dir=spill_dir) as tmp:
        spill = Spill(Path(tmp) / "spill.sqlite", partitions)
        try:
            _spill_items(items, spill, malformed, counts, progress)
            counts.unrouted += spill.resolve_pending()
            infos = [
                _write_partition(spill, index, fs, root, compresslevel)
                for index in range(partitions)
            ]
            shared = _write_lines(fs, f"{root}/{SHARED_NAME}", spill.shared_lines(), compresslevel)
        finally:
            spill.close()
    layout = Layout(
        partitions=tuple(infos),
        shared_file=SHARED_NAME,
        shared=shared,
        malformed=tuple(malformed),
        malformed_total=counts.malformed_total,
        unrouted=counts.unrouted,
    )
    write_layout(workdir, layout)
    return layout


def _spill_items(
    items: Iterable[NdjsonItem],
    spill: Spill,
    malformed: list[str],
    counts: _Counts,
    progress: Callable[[str], None] | None,
) -> None:
    for seq, item in enumerate(items):
        if isinstance(item, NdjsonProblem):
            counts.malformed_total += 1
            if len(malformed) < MAX_MALFORMED_LISTED:
                malformed.append(describe(item))
            continue
        resource = item.resource
        resource_type = resource["resourceType"]
        if not TYPE_NAME.fullmatch(resource_type):  # it names a file of the partition
            counts.malformed_total += 1
            if len(malformed) < MAX_MALFORMED_LISTED:
                why = f"resourceType {resource_type[:80]!r} is not a FHIR resource type name"
                malformed.append(f"{item.source}:{item.line}: {why}")
            continue
        counts.read += 1
        if progress is not None and counts.read % 100_000 == 0:
            progress(f"read {counts.read} resources")
        kind, key = route(resource)
        if kind == "shared":
            spill.add_shared(seq, key, _json(resource))
        elif key is None:
            counts.unrouted += 1
        elif kind == "encounter":
            spill.add_pending(seq, key, resource_type, _json(resource))
        else:
            rank = 0 if resource_type == "Patient" else 1
            spill.add(key, rank, seq, resource_type, _json(resource))
            ident = resource.get("id")
            if resource_type == "Encounter" and isinstance(ident, str) and ident:
                spill.add_encounter(ident, key)
    spill.flush()


class _TypeWriter:
    """One resource type's file of a partition being written: gzip, hashed, line-buffered."""

    def __init__(self, handle: Writable, compresslevel: int) -> None:
        self.hashing = _HashingFile(handle)
        self.compressed = deterministic_gzip(self.hashing, compresslevel)
        self.lines = LineBuffer(self.compressed)
        self.count = 0

    def write(self, line: bytes) -> None:
        self.lines.write_line(line)
        self.count += 1

    def close(self) -> None:
        self.lines.flush()
        self.compressed.close()


def _write_partition(
    spill: Spill, index: int, fs: Any, root: str, compresslevel: int
) -> PartitionInfo:
    folder = f"part-{index:05d}"
    patients_name = f"{folder}/patients.ndjson"
    fs.makedirs(f"{root}/{folder}", exist_ok=True)
    patients = without_patient = resources = 0
    writers: dict[str, _TypeWriter] = {}
    with ExitStack() as stack:
        ids = stack.enter_context(fs.open(f"{root}/{patients_name}", "wb"))
        current: str | None = None
        counts: dict[str, int] = {}

        def end_record() -> None:
            ordered = {t: counts[t] for t in sorted(counts, key=_record_order)}
            ids.write(orjson.dumps({"patient": current, "counts": ordered}) + b"\n")

        for patient, rank, kind, line in spill.sorted_rows(index):
            if patient != current:
                if current is not None:
                    end_record()
                current, counts = patient, {}
                patients += 1
                without_patient += rank != 0
            writer = writers.get(kind)
            if writer is None:
                handle = stack.enter_context(fs.open(f"{root}/{folder}/{kind}.ndjson.gz", "wb"))
                writer = writers[kind] = _TypeWriter(handle, compresslevel)
            writer.write(line)
            counts[kind] = counts.get(kind, 0) + 1
            resources += 1
        if current is not None:
            end_record()
        for writer in writers.values():
            writer.close()
    files = tuple(
        TypeFile(kind, f"{folder}/{kind}.ndjson.gz", w.count, w.hashing.sha256.hexdigest())
        for kind, w in sorted(writers.items())
    )
    return PartitionInfo(
        index=index,
        patients_file=patients_name,
        patients=patients,
        without_patient=without_patient,
        resources=resources,
        files=files,
    )


def _record_order(resource_type: str) -> tuple[bool, str]:
    """The order of a record's types: the Patient first, then by name."""
    return resource_type != "Patient", resource_type


def _write_lines(fs: Any, path: str, lines: Iterable[bytes], compresslevel: int) -> int:
    written = 0
    with fs.open(path, "wb") as raw, deterministic_gzip(raw, compresslevel) as compressed:
        out = LineBuffer(compressed)
        for line in lines:
            out.write_line(line)
            written += 1
        out.flush()
    return written


class _Lines:
    """The lines of one gzip NDJSON file of the work directory, taken n at a time; a file that
    is missing, truncated or holds a line that is not a resource is a PartitionError naming it."""

    def __init__(self, fs: Any, root: str, name: str) -> None:
        self.name = name
        self._path = f"{root}/{name}"
        self._lines: list[bytes] = []
        self._next = 0  # index in _lines of the next line to hand out
        self._number = 0  # line number (1-based) of the last line handed out
        self._rest = b""
        self._done = False
        try:
            self._raw = fs.open(self._path, "rb")
            self._stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
        except (OSError, EOFError, zlib.error) as exc:
            raise self._unreadable(exc) from exc

    def _unreadable(self, exc: BaseException) -> PartitionError:
        return PartitionError(f"{self._path}: unreadable ({type(exc).__name__}: {exc})")

    def _fill(self) -> bool:
        """Read the next chunk's whole lines; False at the end of the file."""
        if self._done:
            return False
        try:
            chunk = self._stream.read(_READ_CHUNK)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._unreadable(exc) from exc
        if not chunk:
            self._done = True
            lines = [self._rest] if self._rest.strip() else []
            self._rest = b""
        else:
            lines = (self._rest + chunk).split(b"\n")
            self._rest = lines.pop()
        self._lines = self._lines[self._next :] + lines
        self._next = 0
        return True

    def take(self, count: int) -> list[dict[str, Any]] | None:
        """The next `count` resources, or None when the file ends first."""
        while len(self._lines) - self._next < count:
            if not self._fill():
                return None
        taken = self._lines[self._next : self._next + count]
        self._next += count
        resources = []
        for raw in taken:
            self._number += 1
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise PartitionError(
                    f"{self._path}:{self._number}: not JSON (the partition is damaged)"
                ) from exc
            if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
                raise PartitionError(
                    f"{self._path}:{self._number}: not a FHIR resource (the partition is damaged)"
                )
            resources.append(value)
        return resources

    def at_end(self) -> bool:
        while len(self._lines) == self._next:
            if not self._fill():
                return True
        return False

    def close(self) -> None:
        self._stream.close()
        self._raw.close()


def read_partition(
    workdir: WorkDir,
    index: int,
    *,
    layout: Layout | None = None,
    types: Collection[str] | None = None,
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Partition `index`'s records, one at a time, by patient id: (patient id, resources), the
    Patient first (when the export has it), then the other types by name, each in the order
    read. `types` keeps only those resource types: the other files are not even opened (what
    a job never reads costs nothing). Pass `layout` to spare reading ``layout.json``."""
    layout = layout or read_layout(workdir)
    if not 0 <= index < layout.count:
        raise ValueError(f"partition {index}: the layout has {layout.count}")
    info = layout.partitions[index]
    wanted = None if types is None else frozenset(types)
    fs, root = filesystem(workdir)
    streams: dict[str, _Lines] = {}
    try:
        for file in info.files:
            if wanted is None or file.resource_type in wanted:
                streams[file.resource_type] = _Lines(fs, root, file.file)
        with fs.open(f"{root}/{info.patients_file}", "rb") as ids:
            for raw in ids:
                entry = orjson.loads(raw)
                patient = entry["patient"]
                record: list[dict[str, Any]] = []
                for kind, count in entry["counts"].items():
                    stream = streams.get(kind)
                    if stream is None:
                        if wanted is None or kind in wanted:
                            raise PartitionError(f"{info.patients_file}: no {kind} file")
                        continue
                    taken = stream.take(count)
                    if taken is None:
                        raise PartitionError(f"{stream.name}: ends inside patient {patient}")
                    record += taken
                yield patient, record
        for stream in streams.values():
            if not stream.at_end():
                raise PartitionError(f"{stream.name}: resources after the last patient")
    except FileNotFoundError as exc:
        raise PartitionError(f"{info.patients_file}: missing ({exc})") from exc
    finally:
        for stream in streams.values():
            stream.close()


def read_shared(workdir: WorkDir, *, layout: Layout | None = None) -> Iterator[dict[str, Any]]:
    """The shared resources (Organization, Practitioner, …), once each."""
    layout = layout or read_layout(workdir)
    fs, root = filesystem(workdir)
    stream = _Lines(fs, root, layout.shared_file)
    try:
        while (batch := stream.take(1)) is not None:
            yield batch[0]
    finally:
        stream.close()
