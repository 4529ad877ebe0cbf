"""The local SQLite database `partition` routes and sorts a population through.

See `cds_service.population.partition` for why: it keeps the encounter→patient map and the
grouping of each partition's lines by patient on disk, with bounded memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

from cds_service.population.layout import partition_of

__all__ = ["Spill"]

_CACHE_KIB = 8 * 1024  # SQLite's page cache (and so its sorter's memory) in KiB
_PAGE_BYTES = 16 * 1024
_BATCH_ROWS = 2_000  # rows buffered before an insert
_BATCH_BYTES = 2 * 1024 * 1024  # or bytes


class Spill:
    """The local SQLite database `partition` routes and sorts through (module docstring)."""

    def __init__(self, path: Path, partitions: int) -> None:
        self.partitions = partitions
        self.db = sqlite3.connect(path, isolation_level=None)
        for pragma in (
            f"page_size = {_PAGE_BYTES}",
            "journal_mode = OFF",
            "synchronous = OFF",
            "temp_store = FILE",
            f"cache_size = -{_CACHE_KIB}",
        ):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("BEGIN")
        for index in range(partitions):
            self.db.execute(
                f"CREATE TABLE p{index} (patient TEXT NOT NULL, rank INTEGER NOT NULL, "
                "seq INTEGER NOT NULL, type TEXT NOT NULL, line BLOB NOT NULL)"
            )
        self.db.execute(
            "CREATE TABLE pending (seq INTEGER PRIMARY KEY, encounter TEXT NOT NULL, "
            "type TEXT NOT NULL, line BLOB NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE encounter (id TEXT PRIMARY KEY, patient TEXT NOT NULL) WITHOUT ROWID"
        )
        self.db.execute(
            "CREATE TABLE shared (seq INTEGER PRIMARY KEY, key TEXT UNIQUE, line BLOB NOT NULL)"
        )
        self._rows: dict[int, list[tuple[str, int, int, str, bytes]]] = {}
        self._pending: list[tuple[int, str, str, bytes]] = []
        self._encounters: list[tuple[str, str]] = []
        self._shared: list[tuple[int, str | None, bytes]] = []
        self._buffered = 0
        self._buffered_bytes = 0

    def _count(self, line: bytes) -> None:
        self._buffered += 1
        self._buffered_bytes += len(line)
        if self._buffered >= _BATCH_ROWS or self._buffered_bytes >= _BATCH_BYTES:
            self.flush()

    def add(self, patient: str, rank: int, seq: int, kind: str, line: bytes) -> None:
        """A line of `patient`'s record: `kind` its resource type, rank 0 for the Patient."""
        index = partition_of(patient, self.partitions)
        self._rows.setdefault(index, []).append((patient, rank, seq, kind, line))
        self._count(line)

    def add_pending(self, seq: int, encounter: str, kind: str, line: bytes) -> None:
        self._pending.append((seq, encounter, kind, line))
        self._count(line)

    def add_encounter(self, encounter: str, patient: str) -> None:
        self._encounters.append((encounter, patient))
        self._count(b"")

    def add_shared(self, seq: int, key: str | None, line: bytes) -> None:
        self._shared.append((seq, key, line))
        self._count(line)

    def flush(self) -> None:
        for index, rows in sorted(self._rows.items()):
            self.db.executemany(f"INSERT INTO p{index} VALUES (?, ?, ?, ?, ?)", rows)
        self.db.executemany("INSERT INTO pending VALUES (?, ?, ?, ?)", self._pending)
        # The first Encounter with an id wins, as the first shared resource does.
        self.db.executemany("INSERT OR IGNORE INTO encounter VALUES (?, ?)", self._encounters)
        self.db.executemany("INSERT OR IGNORE INTO shared VALUES (?, ?, ?)", self._shared)
        self._rows.clear()
        self._pending.clear()
        self._encounters.clear()
        self._shared.clear()
        self._buffered = self._buffered_bytes = 0

    def resolve_pending(self) -> int:
        """Move the encounter-only resources to their patient's partition; returns how many
        name an encounter of no known patient."""
        self.flush()
        unknown = 0
        after = -1
        while True:
            batch = self.db.execute(
                "SELECT p.seq, p.type, p.line, e.patient FROM pending p "
                "LEFT JOIN encounter e ON e.id = p.encounter "
                "WHERE p.seq > ? ORDER BY p.seq LIMIT ?",
                (after, _BATCH_ROWS),
            ).fetchall()
            if not batch:
                break
            for seq, kind, line, patient in batch:
                if patient is None:
                    unknown += 1
                else:
                    self.add(patient, 1, seq, kind, line)
            after = batch[-1][0]
        self.flush()
        return unknown

    def sorted_rows(self, index: int) -> Iterator[tuple[str, int, str, bytes]]:
        """(patient, rank, type, line) of a partition, grouped by patient, Patient first, the
        others in reading order."""
        cursor = self.db.execute(
            f"SELECT patient, rank, type, line FROM p{index} ORDER BY 1, 2, seq"
        )
        yield from cursor

    def shared_lines(self) -> Iterator[bytes]:
        for (line,) in self.db.execute("SELECT line FROM shared ORDER BY seq"):
            yield line

    def close(self) -> None:
        self.db.close()
