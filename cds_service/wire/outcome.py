"""FHIR OperationOutcome bodies for error responses, and pydantic errors turned into issues."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from cds_service.exceptions import Issue

__all__ = ["issues_from_validation", "operation_outcome", "wire_path"]


def wire_path(prefix: str, loc: Sequence[int | str]) -> str:
    """`("context", "draftOrders", "entry", 0)` → `context.draftOrders.entry[0]`."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part:
            path = f"{path}.{part}" if path else str(part)
    return path


def issues_from_validation(error: ValidationError, prefix: str = "") -> list[Issue]:
    """One issue per pydantic error, naming the field on the wire. Input values are never shown."""
    issues = []
    for detail in error.errors(include_input=False, include_url=False):
        loc = [p for p in detail["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        field = wire_path(prefix, loc) or None
        message = str(detail["msg"]).removeprefix("Value error, ")
        kind = detail["type"]
        if kind == "missing":
            message = "is required"
        elif kind == "extra_forbidden":
            message = "is not allowed"
        issues.append(Issue(f"{field}: {message}" if field else message, field))
    return issues


def operation_outcome(issues: Iterable[Issue], severity: str = "error") -> dict[str, Any]:
    """A FHIR R4 OperationOutcome with one issue per problem (`expression` names the field)."""
    out = []
    for issue in issues:
        entry: dict[str, Any] = {
            "severity": severity,
            "code": issue.code,
            "diagnostics": issue.message,
        }
        if issue.field:
            entry["expression"] = [issue.field]
        out.append(entry)
    return {"resourceType": "OperationOutcome", "issue": out}
