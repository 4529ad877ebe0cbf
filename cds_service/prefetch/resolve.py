"""Resolve a service's prefetch keys for one call (CDS Hooks 2.0 "Prefetch Template").

For each key the service needs on this hook:

| what the client sent | what happens                                                       |
|----------------------|--------------------------------------------------------------------|
| the data             | used; a paginated Bundle is completed when the key needs all pages |
| `null`               | known empty: never re-fetched                                       |
| an OperationOutcome  | the key's policy: `fail` (412), `omit` (unobtainable) or `pass`     |
| nothing              | fetched from `fhirServer` with the `fhirAuthorization` token        |

All fetches run in parallel under one deadline; keys whose templates render to the same query
share one fetch. When several queries are missing and the server takes FHIR batches (learned
from its CapabilityStatement, `batch.py`), they go in one `batch` Bundle instead: one round trip;
a batch that fails, or has not answered by half the deadline, falls back to parallel GETs.
A template whose tokens cannot be filled from the context does not apply to the call. When a
*required* key ends up unobtainable, the call answers 412 Precondition Failed, as the
specification demands; optional keys are simply left out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import httpx

from cds_service.exceptions import Issue, PreconditionFailed
from cds_service.jsondepth import DEFAULT_MAX_DEPTH
from cds_service.prefetch.batch import BatchSupport, read_batch
from cds_service.prefetch.fetch import FetchResult, FhirReader, has_next_page
from cds_service.prefetch.templates import render_template
from cds_service.prefetch.types import PrefetchOutcome, PrefetchSpec
from cds_service.wire.fhir import is_operation_outcome
from cds_service.wire.request import HookRequest

__all__ = ["resolve_prefetch"]

log = logging.getLogger(__name__)


async def resolve_prefetch(
    request: HookRequest,
    specs: Mapping[str, PrefetchSpec],
    client: httpx.AsyncClient,
    *,
    deadline_seconds: float,
    max_pages: int,
    fetch_refused: str | None = None,
    slots: asyncio.Semaphore | None = None,
    batch: BatchSupport | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> dict[str, PrefetchOutcome]:
    """Return one PrefetchOutcome per key, or raise PreconditionFailed (412).

    `fetch_refused` (the SSRF guard's reason) forbids fetching: missing keys are unobtainable.
    `slots` bounds the fetches in flight at once (shared by every call of the process);
    `batch` (the process's knowledge of which servers take batches) allows one batch request.
    An answer nested deeper than `max_depth` fails its key (`FhirReader`).
    """
    started = time.perf_counter()
    sent = request.prefetch or {}
    reader = None
    if request.fhir_server is not None and fetch_refused is None:
        token = (
            request.fhir_authorization.access_token.get_secret_value()
            if (request.fhir_authorization)
            else None
        )
        reader = FhirReader(client, request.fhir_server, token, slots, max_depth)

    outcomes: dict[str, PrefetchOutcome] = {}
    pending: dict[str, asyncio.Task[PrefetchOutcome]] = {}
    # Keys whose templates render to the same query share one fetch (e.g. a rule's `patient`
    # and the scores' `scorePatient`).
    wanted: dict[tuple[str, bool], tuple[str, PrefetchSpec]] = {}
    waiting: dict[str, tuple[str, bool]] = {}
    # Each template rendered once (a rule's key and the scores' often share one).
    by_template = {
        template: render_template(template, request.context)
        for template in {spec.template for spec in specs.values()}
    }
    rendered = {key: by_template[spec.template] for key, spec in specs.items()}
    # A key the client did not send is answered by one it sent for the same query (a rule's
    # `conditions` and the scores' `scoreConditions`, say), never fetched again.
    twins = {
        (url, specs[key].all_pages): key for key, url in rendered.items() if key in sent and url
    }
    for key, spec in specs.items():
        url = rendered[key]
        if url is None:
            outcomes[key] = PrefetchOutcome(key, None, "not-applicable")
        elif (given := key if key in sent else twins.get((url, spec.all_pages))) is not None:
            value = sent[given]
            if value is None:
                outcomes[key] = PrefetchOutcome(key, None, "null")
            elif is_operation_outcome(value):
                outcomes[key] = _on_error(key, spec, value, "the client sent an OperationOutcome")
            elif spec.all_pages and has_next_page(value):
                pending[key] = asyncio.create_task(_complete_pages(key, value, reader, max_pages))
            else:
                outcomes[key] = PrefetchOutcome(key, value, "prefetch")
        elif reader is None:
            why = fetch_refused or "no fhirServer to fetch from"
            outcomes[key] = PrefetchOutcome(key, None, "unavailable", why)
        else:
            same = (url, spec.all_pages)
            if same not in wanted:
                # Fetched as `pass`: each key applies its own policy to an OperationOutcome.
                wanted[same] = (key, _passing(spec))
            waiting[key] = same

    if wanted:
        assert reader is not None
        urls = list(dict.fromkeys(url for url, _ in wanted))
        results: list[FetchResult] | None = None
        if (
            batch is not None
            and len(urls) > 1
            and await batch.wait_known(reader, deadline_seconds / 4)
        ):
            results = await _batch(reader, urls, batch, deadline_seconds / 2)
        position = {url: i for i, url in enumerate(urls)}
        # Each distinct query's outcome: known at once from the batch's answer, or a task (its
        # own GET, or the further pages of a paginated answer) shared by its keys.
        ready: dict[tuple[str, bool], PrefetchOutcome | asyncio.Task[PrefetchOutcome]] = {}
        for (url, pages), (key, spec) in wanted.items():
            if results is None:
                ready[(url, pages)] = asyncio.create_task(_fetch(key, spec, url, reader, max_pages))
                continue
            result = results[position[url]]
            settled = _settled(key, spec, result)
            if settled is None:  # paginated: its further pages are read
                assert result.resource is not None
                more = _complete_pages(key, result.resource, reader, max_pages, "fetched")
                ready[(url, pages)] = asyncio.create_task(more)
            else:
                ready[(url, pages)] = settled
        for key, same in waiting.items():
            found = ready[same]
            if isinstance(found, PrefetchOutcome):
                outcomes[key] = _as_key(found, key, specs[key])
            else:
                pending[key] = found

    if pending:
        remaining = max(deadline_seconds - (time.perf_counter() - started), 0.0)
        done, not_done = await asyncio.wait(set(pending.values()), timeout=remaining)
        for task in not_done:
            task.cancel()
        for key, task in pending.items():
            if task in done:
                outcomes[key] = _as_key(task.result(), key, specs[key])
            else:
                outcomes[key] = PrefetchOutcome(key, None, "unavailable", "deadline exceeded")
                log.warning("prefetch key %s not obtained within %.2fs", key, deadline_seconds)

    failed = [
        o
        for key, o in outcomes.items()
        if o.source == "failed"
        or (specs[key].required and (o.source == "unavailable" or not o.complete))
    ]
    if failed:
        issues = [
            Issue(
                f"required data '{o.key}' could not be obtained: {o.detail}",
                f"prefetch.{o.key}",
                "incomplete",
            )
            for o in failed
        ]
        raise PreconditionFailed("required data could not be obtained", issues=issues)
    return {key: outcomes[key] for key in specs}


def _on_error(key: str, spec: PrefetchSpec, value: dict[str, Any], why: str) -> PrefetchOutcome:
    policy = spec.error_policy
    if policy == "pass":
        return PrefetchOutcome(key, value, "operation-outcome", why)
    if policy == "fail":
        return PrefetchOutcome(key, None, "failed", why)
    return PrefetchOutcome(key, None, "unavailable", why)


async def _fetch(
    key: str, spec: PrefetchSpec, url: str, reader: FhirReader, max_pages: int
) -> PrefetchOutcome:
    return await _outcome(key, spec, await reader.read(url), reader, max_pages)


async def _batch(
    reader: FhirReader, urls: list[str], support: BatchSupport, patience: float
) -> list[FetchResult] | None:
    """The batch's answer per query; None when it failed (remembered: the next calls fetch
    one by one until the server's support is checked again) or has not answered within
    `patience` (the rest of the deadline is then the GETs')."""
    try:
        results = await asyncio.wait_for(read_batch(reader, urls), timeout=patience)
    except TimeoutError:
        log.info("prefetch: the batch is slow, fetching each query on its own")
        return None
    except Exception:  # the batch request itself failed: treated as a failed batch
        results = None
    if results is None:
        support.failed(reader)
    return results


@lru_cache(maxsize=1024)
def _passing(spec: PrefetchSpec) -> PrefetchSpec:
    return dataclasses.replace(spec, on_error="pass")


def _as_key(outcome: PrefetchOutcome, key: str, spec: PrefetchSpec) -> PrefetchOutcome:
    """A query's outcome as one of its keys' (with that key's policy for an
    OperationOutcome)."""
    if outcome.key != key:
        outcome = PrefetchOutcome(
            key, outcome.data, outcome.source, outcome.detail, outcome.complete
        )
    if outcome.source == "operation-outcome" and outcome.data is not None:
        return _on_error(key, spec, outcome.data, outcome.detail or "")
    return outcome


def _settled(key: str, spec: PrefetchSpec, result: FetchResult) -> PrefetchOutcome | None:
    """What a fetch's result means for the key; None when further pages must be read first."""
    if not result.ok:
        log.info("prefetch key %s: fetch failed (%s)", key, result.error)
        return PrefetchOutcome(key, None, "unavailable", f"fetch failed: {result.error}")
    if result.resource is None:
        return PrefetchOutcome(key, None, "null", "not found on fhirServer")
    if is_operation_outcome(result.resource):
        return _on_error(key, spec, result.resource, "fhirServer answered with an OperationOutcome")
    if spec.all_pages and has_next_page(result.resource):
        return None
    return PrefetchOutcome(key, result.resource, "fetched")


async def _outcome(
    key: str, spec: PrefetchSpec, result: FetchResult, reader: FhirReader, max_pages: int
) -> PrefetchOutcome:
    settled = _settled(key, spec, result)
    if settled is not None:
        return settled
    assert result.resource is not None
    return await _complete_pages(key, result.resource, reader, max_pages, "fetched")


async def _complete_pages(
    key: str,
    bundle: dict[str, Any],
    reader: FhirReader | None,
    max_pages: int,
    source: str = "prefetch",
) -> PrefetchOutcome:
    if reader is None:
        return PrefetchOutcome(
            key, bundle, source, "partial: no fhirServer to read further pages", complete=False
        )
    merged, problem = await reader.remaining_pages(bundle, max_pages)
    if problem is not None:
        return PrefetchOutcome(key, merged, source, f"partial: {problem}", complete=False)
    return PrefetchOutcome(key, merged, source)
