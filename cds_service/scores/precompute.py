"""Warming the score cache for a population: from Bulk Data NDJSON, files or a live export.

Resources are grouped by patient (`cds_service.bulk.routing.patient_of`: `Patient.id`, or the
`subject`/`patient`/`beneficiary` reference of the others), then every score is computed for
every patient through the same `ScoreProvider` the hooks use, so the entries land under the keys
the hooks read. Bad lines are reported with their file and line and skipped; the run goes on.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from cds_service.bulk.ndjson import NdjsonItem, NdjsonProblem
from cds_service.bulk.routing import patient_of
from cds_service.scores.provider import ScoreProvider

__all__ = ["PrecomputeSummary", "precompute"]


@dataclass(slots=True)
class PrecomputeSummary:
    """What a run did."""

    patients: int = 0
    errors: int = 0
    resources: int = 0
    by_score: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def computed(self) -> int:
        return sum(counts.get("computed", 0) for counts in self.by_score.values())

    @property
    def not_computable(self) -> int:
        return sum(counts.get("not_computable", 0) for counts in self.by_score.values())

    def lines(self) -> list[str]:
        out = [
            f"patients: {self.patients}",
            f"resources read: {self.resources}",
            f"scores computed: {self.computed}",
            f"not computable: {self.not_computable}",
            f"errors: {self.errors}",
        ]
        for name, counts in sorted(self.by_score.items()):
            out.append(
                f"  {name}: {counts.get('computed', 0)} computed, "
                f"{counts.get('not_computable', 0)} not computable"
            )
        return out


async def precompute(
    items: AsyncIterator[NdjsonItem],
    provider: ScoreProvider,
    *,
    scores: Sequence[str],
    at: datetime,
    tenant: str = "default",
    progress: Callable[[str], None] | None = None,
    errors_to: TextIO | None = None,
) -> PrecomputeSummary:
    """Read every item, then score every patient; returns the summary."""
    errors_to = errors_to or sys.stderr
    summary = PrecomputeSummary()
    patients: dict[str, list[dict[str, Any]]] = {}
    async for item in items:
        if isinstance(item, NdjsonProblem):
            where = f"{item.source}:{item.line}" if item.line else item.source
            summary.errors += 1
            print(f"{where}: {item.reason}", file=errors_to)
            continue
        summary.resources += 1
        owner = patient_of(item.resource)
        if owner is not None:
            patients.setdefault(owner, []).append(item.resource)
        if progress and summary.resources % 10_000 == 0:
            progress(f"read {summary.resources} resources")
    summary.patients = len(patients)
    for done, (patient_id, resources) in enumerate(sorted(patients.items()), start=1):
        for name in scores:
            counts = summary.by_score.setdefault(name, {})
            try:
                result = await provider.score(
                    name, resources, at, patient_id=patient_id, tenant=tenant
                )
            except Exception as exc:  # one patient's odd record must not stop the run
                summary.errors += 1
                print(f"patient {patient_id}: {name} failed ({type(exc).__name__})", file=errors_to)
                continue
            key = "computed" if result.get("value") is not None else "not_computable"
            counts[key] = counts.get(key, 0) + 1
        if progress and (done % 100 == 0 or done == summary.patients):
            progress(f"scored {done}/{summary.patients} patients")
    return summary
