"""The one error type of the bulk package, and a short text for a FHIR OperationOutcome.

Messages name the step that failed and what the server said; they never contain an access token,
a client assertion or key material.
"""

from __future__ import annotations

from typing import Any

from cds_service.exceptions import CDSServiceError

__all__ = ["BulkError", "clean_text", "outcome_text"]

_MAX_TEXT = 300


class BulkError(CDSServiceError):
    """Authorization, export or file access failed; the message says which and why."""

    def __init__(self, message: str, *, server_status: int | None = None) -> None:
        super().__init__(message)
        self.server_status = server_status  # the HTTP status the server answered, when any


def clean_text(text: str, limit: int = _MAX_TEXT) -> str:
    """Server-supplied text made safe to print: no control characters, at most `limit` chars."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def outcome_text(body: Any) -> str | None:
    """The issues of an OperationOutcome as one line (severity, code, diagnostics), else None."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    parts: list[str] = []
    issues = body.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        detail_text = details.get("text") if isinstance(details, dict) else None
        text = issue.get("diagnostics") or detail_text or ""
        label = "/".join(
            str(issue[k]) for k in ("severity", "code") if isinstance(issue.get(k), str)
        )
        parts.append(f"{label}: {text}" if text else label)
    return clean_text("; ".join(p for p in parts if p)) or "OperationOutcome without issues"
