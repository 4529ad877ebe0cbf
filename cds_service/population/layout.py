"""The layout of a partitioned population (``layout.json``) and its work directory.

See `cds_service.population.partition` for what the files hold. The work directory is a local
path or an fsspec URL; `filesystem` gives the fsspec filesystem and the root path in it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import fsspec
import orjson

__all__ = [
    "HASH_DESCRIPTION",
    "LAYOUT_NAME",
    "LAYOUT_VERSION",
    "MAX_MALFORMED_LISTED",
    "SHARED_NAME",
    "Layout",
    "PartitionError",
    "PartitionInfo",
    "TypeFile",
    "WorkDir",
    "filesystem",
    "partition_of",
    "read_layout",
    "write_layout",
]

LAYOUT_NAME = "layout.json"
LAYOUT_VERSION = 2  # 2: one file per resource type in each partition
SHARED_NAME = "shared.ndjson.gz"
MAX_MALFORMED_LISTED = 10_000
HASH_DESCRIPTION = "blake2b (8-byte digest, big-endian) of the UTF-8 patient id, modulo P"

#: A local path or an fsspec URL (file://, memory://, s3://…).
WorkDir = str | os.PathLike[str]


class PartitionError(Exception):
    """The work directory does not hold what its layout says (missing or damaged files)."""


def partition_of(patient_id: str, partitions: int) -> int:
    """The partition of a patient: stable across processes, machines and Python versions."""
    digest = hashlib.blake2b(patient_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(frozen=True, slots=True)
class TypeFile:
    """One resource type's file of a partition: its name (in the work directory), how many
    resources it holds and the SHA-256 of its bytes."""

    resource_type: str
    file: str
    resources: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.resource_type,
            "file": self.file,
            "resources": self.resources,
            "sha256": self.sha256,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TypeFile:
        return cls(
            resource_type=str(data["type"]),
            file=str(data["file"]),
            resources=int(data["resources"]),
            sha256=str(data["sha256"]),
        )


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """One partition: its files (names in the work directory) and what they hold."""

    index: int
    patients_file: str
    patients: int  # records (patient ids) in the partition
    without_patient: int  # of which have no Patient resource (resources name an absent patient)
    resources: int
    files: tuple[TypeFile, ...]  # one per resource type, by type name

    def file_of(self, resource_type: str) -> TypeFile | None:
        return next((f for f in self.files if f.resource_type == resource_type), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "patientsFile": self.patients_file,
            "patients": self.patients,
            "withoutPatient": self.without_patient,
            "resources": self.resources,
            "files": [f.to_json() for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartitionInfo:
        return cls(
            index=int(data["index"]),
            patients_file=str(data["patientsFile"]),
            patients=int(data["patients"]),
            without_patient=int(data["withoutPatient"]),
            resources=int(data["resources"]),
            files=tuple(TypeFile.from_json(f) for f in data["files"]),
        )


@dataclass(frozen=True, slots=True)
class Layout:
    """What `partition` wrote (``layout.json``)."""

    partitions: tuple[PartitionInfo, ...]
    shared_file: str
    shared: int  # resources in shared_file
    malformed: tuple[str, ...]  # `file:line: reason`, at most MAX_MALFORMED_LISTED
    malformed_total: int
    unrouted: int  # resources that name no patient, or an encounter of no known patient

    @property
    def count(self) -> int:
        """P, the number of partitions."""
        return len(self.partitions)

    @property
    def patients(self) -> int:
        return sum(p.patients for p in self.partitions)

    @property
    def resources(self) -> int:
        """Resources in the partitions (not counting the shared ones)."""
        return sum(p.resources for p in self.partitions)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": LAYOUT_VERSION,
            "hash": HASH_DESCRIPTION,
            "count": self.count,
            "patients": self.patients,
            "resources": self.resources,
            "partitions": [p.to_json() for p in self.partitions],
            "shared": {"file": self.shared_file, "resources": self.shared},
            "malformed": list(self.malformed),
            "malformedTotal": self.malformed_total,
            "unrouted": self.unrouted,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layout:
        if data.get("version") != LAYOUT_VERSION:
            raise PartitionError(
                f"layout version {data.get('version')!r} is not {LAYOUT_VERSION} "
                "(written by another release: partition again)"
            )
        return cls(
            partitions=tuple(PartitionInfo.from_json(p) for p in data["partitions"]),
            shared_file=str(data["shared"]["file"]),
            shared=int(data["shared"]["resources"]),
            malformed=tuple(str(m) for m in data["malformed"]),
            malformed_total=int(data["malformedTotal"]),
            unrouted=int(data["unrouted"]),
        )


# --- the work directory (local or fsspec) ---


def filesystem(workdir: WorkDir) -> tuple[Any, str]:
    """The fsspec filesystem of `workdir` and the root path in it (no trailing slash)."""
    fs, root = fsspec.core.url_to_fs(os.fspath(workdir))
    return fs, str(root).rstrip("/")


def write_layout(workdir: WorkDir, layout: Layout) -> None:
    """Write ``layout.json`` (last: its presence says the partitioning finished)."""
    fs, root = filesystem(workdir)
    with fs.open(f"{root}/{LAYOUT_NAME}", "wb") as handle:
        handle.write(orjson.dumps(layout.to_json(), option=orjson.OPT_INDENT_2) + b"\n")


def read_layout(workdir: WorkDir) -> Layout:
    """The layout `partition` wrote under `workdir`; PartitionError when there is none (the
    partitioning never finished)."""
    fs, root = filesystem(workdir)
    try:
        with fs.open(f"{root}/{LAYOUT_NAME}", "rb") as handle:
            data = orjson.loads(handle.read())
    except FileNotFoundError as exc:
        raise PartitionError(
            f"{workdir}: no {LAYOUT_NAME} (not partitioned, or unfinished)"
        ) from exc
    return Layout.from_json(data)
