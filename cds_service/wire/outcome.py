"""FHIR OperationOutcome bodies for error responses, and pydantic errors turned into issues."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from cds_service.exceptions import Issue
from cds_service.validation import field_errors

__all__ = ["issues_from_validation", "operation_outcome"]


def issues_from_validation(
    error: ValidationError | Iterable[Mapping[str, Any]], prefix: str = ""
) -> list[Issue]:
    """One issue per pydantic error, naming the field on the wire. Input values are never shown."""
    return [Issue(str(e), e.field or None) for e in field_errors(error, prefix)]


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
