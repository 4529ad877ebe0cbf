"""Small, defensive readers of plain FHIR JSON shared by the built-in services.

Every helper accepts whatever JSON it is given and answers "nothing" (None, an empty list or set)
for shapes it does not understand: a service must never fail because an EHR sent an odd resource.
Both R4 (CodeableConcept) and STU3 (bare code string) spellings of status fields are understood,
because the official hook examples still use the STU3 ones.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from cds_service.wire.response import Source

__all__ = [
    "NOT_REAL",
    "RXNORM",
    "card_source",
    "codings",
    "concept_name",
    "markdown_escape",
    "medication_name",
    "parse_instant",
    "patient_name",
    "resource_id",
    "resources_of_type",
    "rxnorm_codes",
    "status_codes",
    "truncate",
]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
_INSTANT = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:\d{2})")
SUMMARY_LIMIT = 139  # CDS Hooks: summary is a "<140-character" sentence


def card_source(title: str) -> Source:
    """The `source` of every card a built-in service emits."""
    return Source(label=f"cds-service built-in: {title}")


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def resource_id(resource: dict[str, Any]) -> str | None:
    """A resource's logical id, or None when it has none (or an odd one)."""
    return _text(resource.get("id"))


def resources_of_type(data: Any, *types: str) -> list[dict[str, Any]]:
    """The resources of `types` in a Bundle (or the resource itself when `data` is one)."""
    if not isinstance(data, dict):
        return []
    if data.get("resourceType") in types:
        return [data]
    if data.get("resourceType") != "Bundle" or not isinstance(data.get("entry"), list):
        return []
    return [
        entry["resource"]
        for entry in data["entry"]
        if isinstance(entry, dict)
        and isinstance(entry.get("resource"), dict)
        and entry["resource"].get("resourceType") in types
    ]


def codings(concept: Any) -> set[tuple[str, str]]:
    """The (system, code) pairs of a CodeableConcept; codings lacking either are skipped."""
    if not isinstance(concept, dict) or not isinstance(concept.get("coding"), list):
        return set()
    pairs = set()
    for coding in concept["coding"]:
        if isinstance(coding, dict):
            system, code = _text(coding.get("system")), _text(coding.get("code"))
            if system and code:
                pairs.add((system, code))
    return pairs


def rxnorm_codes(med_request: dict[str, Any]) -> set[str]:
    """The RxNorm codes of a MedicationRequest's `medicationCodeableConcept`."""
    return {
        code
        for system, code in codings(med_request.get("medicationCodeableConcept"))
        if system == RXNORM
    }


def concept_name(concept: Any) -> str | None:
    """A CodeableConcept's text, else its first coding's display, else its first code."""
    if not isinstance(concept, dict):
        return None
    if name := _text(concept.get("text")):
        return name
    entries = concept.get("coding")
    coding_list = [c for c in entries if isinstance(c, dict)] if isinstance(entries, list) else []
    for key in ("display", "code"):
        for coding in coding_list:
            if name := _text(coding.get(key)):
                return name
    return None


def medication_name(med_request: dict[str, Any]) -> str | None:
    """What a clinician would call the drug of a MedicationRequest (None when unnamed)."""
    reference = med_request.get("medicationReference")
    return concept_name(med_request.get("medicationCodeableConcept")) or (
        _text(reference.get("display")) if isinstance(reference, dict) else None
    )


#: Verification statuses of a record that is not a fact: voided, or shown to be false.
NOT_REAL = frozenset({"entered-in-error", "refuted"})


def status_codes(value: Any) -> set[str]:
    """The codes of a status field given as a CodeableConcept (R4) or a bare code (STU3).

    The code system is not checked: status codes are only meaningful in their own system, and
    EHRs often leave it out."""
    if isinstance(value, str):
        return {value.strip().lower()} if value.strip() else set()
    entries = value.get("coding") if isinstance(value, dict) else None
    if not isinstance(entries, list):
        return set()
    return {
        c["code"].strip().lower()
        for c in entries
        if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"].strip()
    }


def patient_name(patient: Any) -> str | None:
    """A Patient's display name: the official (else first) HumanName's text or given + family."""
    if not isinstance(patient, dict) or not isinstance(patient.get("name"), list):
        return None
    names = [n for n in patient["name"] if isinstance(n, dict)]
    names.sort(key=lambda n: n.get("use") != "official")  # stable: official names first
    for name in names:
        if text := _text(name.get("text")):
            return text
        given = name.get("given")
        parts = [p for p in given if _text(p)] if isinstance(given, list) else []
        if family := _text(name.get("family")):
            parts.append(family)
        if parts:
            return " ".join(p.strip() for p in parts)
    return None


def parse_instant(value: Any) -> datetime | None:
    """A FHIR date-time with a time and a UTC offset (`2019-08-10T09:00:00-06:00`, `...Z`);
    None for anything else (dates, times without offset, malformed text), since only
    offset-aware instants can be compared safely. Stricter than `datetime.fromisoformat`,
    which would read `09:10:00:00-06:00` as a time."""
    match = _INSTANT.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        return None
    base, fraction, offset = match.groups()
    try:
        return datetime.fromisoformat(base + (fraction or "")[:7] + offset.replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13 or hour 25
        return None


def truncate(text: str, limit: int = SUMMARY_LIMIT) -> str:
    """`text` cut to at most `limit` characters, marking a cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def markdown_escape(text: str) -> str:
    """Escape the characters that would turn a drug or problem name into Markdown markup."""
    return "".join("\\" + ch if ch in "\\`*_[]<>#|" else ch for ch in text)
