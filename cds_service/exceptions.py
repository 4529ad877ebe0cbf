"""The service's exception tree. Every error a client can cause maps to one HTTP status.

    CDSServiceError
    ├── RequestError            400  malformed body, context, prefetch or feedback
    ├── UnsupportedMediaType    415  body is not JSON
    ├── PayloadTooLarge         413  body over the configured limit
    ├── ServiceNotFound         404  unknown service id
    ├── PreconditionFailed      412  data the service requires could not be obtained
    ├── Unauthorized            401  no valid JWT (the reason is logged, never sent)
    ├── TooManyRequests         429  the tenant's rate limit
    └── ConfigurationError           bad settings or service definitions, found at start-up

`api/errors.py` is the one place these become HTTP responses (FHIR OperationOutcome bodies).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CDSServiceError",
    "ConfigurationError",
    "Issue",
    "PayloadTooLarge",
    "PreconditionFailed",
    "RequestError",
    "ServiceNotFound",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: a message and, where known, the wire path of the offending field."""

    message: str
    field: str | None = None
    code: str = "invalid"  # a FHIR issue-type code


class CDSServiceError(Exception):
    """Base of every error this service raises on purpose."""

    status_code: int = 500
    issue_code: str = "exception"

    def __init__(self, message: str, *, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.issues = issues or [Issue(message, code=self.issue_code)]


class RequestError(CDSServiceError):
    status_code = 400
    issue_code = "invalid"


class UnsupportedMediaType(CDSServiceError):
    status_code = 415
    issue_code = "not-supported"


class PayloadTooLarge(CDSServiceError):
    status_code = 413
    issue_code = "too-costly"


class ServiceNotFound(CDSServiceError):
    status_code = 404
    issue_code = "not-found"


class PreconditionFailed(CDSServiceError):
    status_code = 412
    issue_code = "incomplete"


class Unauthorized(CDSServiceError):
    status_code = 401
    issue_code = "login"

    def __init__(self) -> None:
        super().__init__("authentication required")


class TooManyRequests(CDSServiceError):
    status_code = 429
    issue_code = "throttled"

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many requests")
        self.retry_after = retry_after


class ConfigurationError(CDSServiceError):
    """Raised at start-up; never reaches a client."""
