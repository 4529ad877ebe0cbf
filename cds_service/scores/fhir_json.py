"""Small readers for plain FHIR R4 JSON: dates, codings, Quantities.

The JSON is an EHR's, validated by nobody: every reader takes any value where it expects an
element (an object, a list, a string) and reads a value of another kind as absent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

__all__ = ["items", "obj", "parse_fhir_datetime", "quantity", "status_code", "string"]

UCUM = "http://unitsofmeasure.org"


def obj(value: Any) -> dict[str, Any]:
    """An element that should be an object: itself, or {} for anything else."""
    return value if isinstance(value, dict) else {}


def items(value: Any) -> list[dict[str, Any]]:
    """The objects of an element that should be a list of objects (anything else: none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def string(value: Any) -> str | None:
    """An element that should be a string (a code, a status): itself, or None."""
    return value if isinstance(value, str) else None


def parse_fhir_datetime(text: Any) -> datetime | None:
    """A FHIR date / dateTime / instant as an aware datetime (dates: midnight UTC)."""
    if not isinstance(text, str) or not text:
        return None
    return _parse_text(text)


# A record repeats its timestamps (Synthea's Observations of one encounter share one; about 11
# Observations a string): each text is parsed once. Datetimes are immutable, so shared.
@lru_cache(maxsize=8192)
def _parse_text(text: str) -> datetime | None:
    try:
        if len(text) <= 10:
            parts = [int(p) for p in text.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def status_code(concept: Any) -> str | None:
    for coding in items(obj(concept).get("coding")):
        if coding.get("code"):
            return str(coding["code"])
    return None


def quantity(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or "value" not in value:
        return None
    unit = value.get("code") if value.get("system") == UCUM else None
    out = {"value": value["value"], "unit": unit or value.get("unit") or value.get("code")}
    if value.get("comparator"):
        out["comparator"] = value["comparator"]
    return out
