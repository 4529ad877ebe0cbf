"""Shared paths and loaders for the score tests (fixtures are read-only)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
RISK_SCORES = FIXTURES / "risk-scores"
SYNTHEA = FIXTURES / "fhir-r4" / "synthea"
SYNTHEA_FILES = sorted(p for p in SYNTHEA.glob("*.json") if not p.name.startswith("_"))


def synthea_file(first_name: str) -> Path:
    """The Synthea bundle whose file name starts with `first_name`."""
    (path,) = [p for p in SYNTHEA_FILES if p.name.startswith(first_name + "_")]
    return path


def bundle_resources(path: Path) -> list[dict[str, Any]]:
    bundle = json.loads(path.read_text())
    return [entry["resource"] for entry in bundle["entry"]]


def last_encounter(resources: list[dict[str, Any]]) -> datetime:
    """The latest Encounter.period.start."""
    return max(
        datetime.fromisoformat(r["period"]["start"])
        for r in resources
        if r["resourceType"] == "Encounter"
    )
