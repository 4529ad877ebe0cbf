"""Small readers for plain FHIR R4 JSON: dates, codings, Quantities."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["parse_fhir_datetime", "quantity", "status_code"]

UCUM = "http://unitsofmeasure.org"


def parse_fhir_datetime(text: Any) -> datetime | None:
    """A FHIR date / dateTime / instant as an aware datetime (dates: midnight UTC)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        if len(text) <= 10:
            parts = [int(p) for p in text.split("-")] + [1, 1]
            return datetime(parts[0], parts[1], parts[2], tzinfo=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def status_code(concept: Any) -> str | None:
    for coding in (concept or {}).get("coding") or []:
        if isinstance(coding, dict) and coding.get("code"):
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
