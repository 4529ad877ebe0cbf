"""What a service asks of prefetch, and what prefetch hands back, per key.

`PrefetchSpec` is a service's need (a CDS Hooks prefetch template and how strict to be about it);
`PrefetchOutcome` is how `resolve.py` met it for one call. Services (`services/definition.py`)
and the rule engine speak in these types; prefetch itself needs nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.config import PrefetchErrorPolicy
from cds_service.types import JSONObject

__all__ = ["PrefetchOutcome", "PrefetchSpec"]


@dataclass(frozen=True, slots=True)
class PrefetchSpec:
    """One prefetch key a service needs.

    - `template`: a CDS Hooks 2.0 prefetch template, advertised in discovery.
    - `required`: when the data can be obtained neither from prefetch nor from the FHIR server,
      the call answers 412 (otherwise the service runs without it).
    - `all_pages`: follow a paginated Bundle's `next` links so the service sees every entry.
    - `on_error`: what an OperationOutcome in place of the data means: `fail` (412), `omit`
      (treat as unobtainable) or `pass` (hand the OperationOutcome to the service).
    """

    template: str
    required: bool = False
    all_pages: bool = False
    on_error: PrefetchErrorPolicy | None = None

    @property
    def error_policy(self) -> PrefetchErrorPolicy:
        """`fail` for required keys and `omit` for optional ones unless set explicitly."""
        if self.on_error is not None:
            return self.on_error
        return "fail" if self.required else "omit"


@dataclass(frozen=True, slots=True)
class PrefetchOutcome:
    """How one key was satisfied: its data (None = known empty) and where it came from."""

    key: str
    data: JSONObject | None
    source: str  # prefetch | fetched | null | not-applicable | unavailable | operation-outcome
    detail: str | None = None
    complete: bool = True  # False when later pages of a paginated Bundle could not be read

    @property
    def available(self) -> bool:
        """True when the key's data is known (including known-empty)."""
        return self.source in ("prefetch", "fetched", "null", "operation-outcome")
