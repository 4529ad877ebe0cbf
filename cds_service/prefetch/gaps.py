"""Which of a call's prefetch keys failed to load, and what resource type each key holds.

A key *failed* when its data could not be obtained (a fetch failed or timed out, the server or
the EHR answered with an OperationOutcome, fetching was refused) or was obtained only in part (a
page of a paginated search could not be read). A key whose template does not apply to the call
(`not-applicable`: its context token is absent) did not fail: there is nothing to load. What
failed is *unknown*, never empty: rules that need it are skipped and scores that read it are not
computable (`rules/engine.py`, `scores/fhir_inputs.py`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from cds_service.prefetch.types import PrefetchOutcome

__all__ = ["failed_keys", "template_type"]

_TYPE = re.compile(r"^([A-Z][A-Za-z]{1,63})(?:[/?]|$)")


@functools.lru_cache(maxsize=1024)
def template_type(template: str) -> str | None:
    """The resource type a prefetch template reads or searches (`Condition?patient=…` →
    Condition), or None for anything else."""
    match = _TYPE.match(template.strip())
    return match.group(1) if match else None


def failed_keys(prefetch: Mapping[str, PrefetchOutcome]) -> dict[str, str]:
    """Each key that failed to load, with why (its outcome's detail)."""
    failed: dict[str, str] = {}
    for key, outcome in prefetch.items():
        if outcome.source == "not-applicable":
            continue
        if not outcome.available:
            failed[key] = outcome.detail or "could not be obtained"
        elif not outcome.complete:
            failed[key] = outcome.detail or "partial"
    return failed
