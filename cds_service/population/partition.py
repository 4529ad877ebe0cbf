"""A population hash-partitioned by patient, on disk, for the engine to process partition by
partition.

    layout = partition(Path("export/"), "s3://bucket/run-1", partitions=64)
    for patient_id, resources in read_partition("s3://bucket/run-1", 7):
        ...                                   # one patient's record at a time, Patient first

`partition` reads a source (`cds_service.population.sources`) once, routes every resource with
the one routing (`cds_service.bulk.routing`), and writes under the work directory (a local path
or an fsspec URL: ``file://``, ``memory://``, ``s3://`` when s3fs is installed):

- ``part-00000.ndjson.gz`` … one gzip NDJSON file per partition: a patient goes to partition
  ``blake2b-64(UTF-8 id) mod P`` (stable across processes and machines, unlike ``hash()``); in
  the file patients follow each other by id, each patient's resources contiguous with the
  Patient first, the others in the order they were read;
- ``part-00000.patients.ndjson`` … each record's patient id and resource count, in file order
  (a resource naming only an encounter does not say its patient, so the file cannot);
- ``shared.ndjson.gz``: the resources no one patient owns, once each (first occurrence of each
  ``Type/id``), in the order read;
- ``layout.json``, written last: P, the files, patients and resources per partition (and how
  many records have no Patient resource), each partition's SHA-256, the malformed lines
  (``file:line: reason``, the first `MAX_MALFORMED_LISTED`, all counted), the unrouted count.

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
- a partition file is then written from ``SELECT … ORDER BY patient, rank, seq`` on its table:
  SQLite's external merge sort groups the patients (bounded memory, temporary files), and the
  lines stream to the gzip file one at a time.

`read_partition` streams the partition file and its patients file side by side: one record in
memory at a time.
"""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import orjson

from cds_service.bulk.ndjson import NdjsonItem, NdjsonProblem, iter_ndjson_stream
from cds_service.bulk.routing import route
from cds_service.population.layout import (
    LAYOUT_NAME,
    MAX_MALFORMED_LISTED,
    SHARED_NAME,
    Layout,
    PartitionError,
    PartitionInfo,
    WorkDir,
    filesystem,
    partition_of,
    read_layout,
    write_layout,
)
from cds_service.population.sources import describe, open_source
from cds_service.population.spill import Spill
from cds_service.population.writer import LineBuffer, Writable, deterministic_gzip

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
        counts.read += 1
        if progress is not None and counts.read % 100_000 == 0:
            progress(f"read {counts.read} resources")
        resource = item.resource
        kind, key = route(resource)
        if kind == "shared":
            spill.add_shared(seq, key, _json(resource))
        elif key is None:
            counts.unrouted += 1
        elif kind == "encounter":
            spill.add_pending(seq, key, _json(resource))
        else:
            resource_type = resource["resourceType"]
            spill.add(key, 0 if resource_type == "Patient" else 1, seq, _json(resource))
            ident = resource.get("id")
            if resource_type == "Encounter" and isinstance(ident, str) and ident:
                spill.add_encounter(ident, key)
    spill.flush()


def _write_partition(
    spill: Spill, index: int, fs: Any, root: str, compresslevel: int
) -> PartitionInfo:
    name = f"part-{index:05d}.ndjson.gz"
    patients_name = f"part-{index:05d}.patients.ndjson"
    patients = without_patient = resources = 0
    with fs.open(f"{root}/{name}", "wb") as raw, fs.open(f"{root}/{patients_name}", "wb") as ids:
        hashing = _HashingFile(raw)
        with deterministic_gzip(hashing, compresslevel) as compressed:
            out = LineBuffer(compressed)
            current: str | None = None
            count = 0
            for patient, rank, line in spill.sorted_rows(index):
                if patient != current:
                    if current is not None:
                        ids.write(orjson.dumps({"patient": current, "resources": count}) + b"\n")
                    current, count = patient, 0
                    patients += 1
                    without_patient += rank != 0
                out.write_line(line)
                count += 1
                resources += 1
            if current is not None:
                ids.write(orjson.dumps({"patient": current, "resources": count}) + b"\n")
            out.flush()
    return PartitionInfo(
        index=index,
        file=name,
        patients_file=patients_name,
        patients=patients,
        without_patient=without_patient,
        resources=resources,
        sha256=hashing.sha256.hexdigest(),
    )


def _write_lines(fs: Any, path: str, lines: Iterable[bytes], compresslevel: int) -> int:
    written = 0
    with fs.open(path, "wb") as raw, deterministic_gzip(raw, compresslevel) as compressed:
        out = LineBuffer(compressed)
        for line in lines:
            out.write_line(line)
            written += 1
        out.flush()
    return written


def _resources(fs: Any, path: str) -> Iterator[dict[str, Any]]:
    try:
        with fs.open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            chunks = iter(lambda: stream.read(_READ_CHUNK), b"")
            for item in iter_ndjson_stream(chunks, path):
                if isinstance(item, NdjsonProblem):
                    raise PartitionError(f"{describe(item)} (the partition is damaged)")
                yield item.resource
    except (OSError, EOFError, zlib.error) as exc:  # missing, truncated, not gzip
        raise PartitionError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from exc


def read_partition(
    workdir: WorkDir, index: int, *, layout: Layout | None = None
) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Partition `index`'s records, one at a time: (patient id, resources, Patient first when
    the export has it), by patient id. Pass `layout` to spare reading ``layout.json``."""
    layout = layout or read_layout(workdir)
    if not 0 <= index < layout.count:
        raise ValueError(f"partition {index}: the layout has {layout.count}")
    info = layout.partitions[index]
    fs, root = filesystem(workdir)
    resources = _resources(fs, f"{root}/{info.file}")
    with fs.open(f"{root}/{info.patients_file}", "rb") as ids:
        for raw in ids:
            entry = orjson.loads(raw)
            record = list(islice(resources, entry["resources"]))
            if len(record) != entry["resources"]:
                raise PartitionError(f"{info.file}: ends inside patient {entry['patient']}")
            yield entry["patient"], record
    if next(resources, None) is not None:
        raise PartitionError(f"{info.file}: resources after the last patient")


def read_shared(workdir: WorkDir, *, layout: Layout | None = None) -> Iterator[dict[str, Any]]:
    """The shared resources (Organization, Practitioner, …), once each."""
    layout = layout or read_layout(workdir)
    fs, root = filesystem(workdir)
    yield from _resources(fs, f"{root}/{layout.shared_file}")
