"""The RxNorm codes of the shared fixtures, with their displays and where they occur.

Reads every FHIR JSON file, NDJSON file and gzip NDJSON file under the fixtures directory
(`../shared/fixtures` beside the checkout, as the tests read it): the Synthea bundles of
`fhir-r4/`, the bulk exports of `bulk-ndjson/`, the CDS Hooks examples of `cds-hooks/`. Every
Coding with the RxNorm system counts, wherever it stands (orders, statements, claims,
allergies).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FIXTURES", "FixtureDrug", "fixture_drugs"]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@dataclass(slots=True)
class FixtureDrug:
    """One RxNorm code of the fixtures."""

    code: str
    displays: set[str] = field(default_factory=set)
    count: int = 0
    groups: set[str] = field(default_factory=set)  # fhir-r4, bulk-ndjson, cds-hooks

    @property
    def display(self) -> str:
        """The display written most like RxNorm's (lower case ingredients first), else any."""
        return (
            sorted(self.displays, key=lambda d: (not d[:1].islower(), d))[0]
            if self.displays
            else ""
        )


def _documents(path: Path) -> Iterator[Any]:
    name = path.name
    if name.endswith(".ndjson.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            yield from (json.loads(line) for line in lines if line.strip())
    elif name.endswith(".ndjson"):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                yield json.loads(line)
            except ValueError:
                continue  # the bulk-data-tools mocks hold deliberately broken lines
    elif name.endswith(".json"):
        yield json.loads(path.read_text(encoding="utf-8"))


def _codings(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if value.get("system") == RXNORM and isinstance(value.get("code"), str):
            yield value
        for item in value.values():
            yield from _codings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _codings(item)


def fixture_drugs(root: Path = FIXTURES) -> dict[str, FixtureDrug]:
    """Every RxNorm code under `root`, by code."""
    found: dict[str, FixtureDrug] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        group = path.relative_to(root).parts[0]
        for document in _documents(path):
            for coding in _codings(document):
                drug = found.setdefault(coding["code"], FixtureDrug(coding["code"]))
                if isinstance(coding.get("display"), str) and coding["display"].strip():
                    drug.displays.add(" ".join(coding["display"].split()))
                drug.count += 1
                drug.groups.add(group)
    return found
