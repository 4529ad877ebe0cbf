"""Missing prefetch in one round trip: a FHIR `batch` Bundle of the call's searches.

When a call misses several prefetch keys, they are fetched with one `POST [base]` whose
Bundle (type `batch`) holds one `GET` entry per distinct query, if the server's
CapabilityStatement says it takes batches (`rest.interaction` code `batch`). The answer is read
per entry as a GET's would be: its `response.status` and its `resource` (or `response.outcome`).

What each server supports is learned once (`GET [base]/metadata`) and kept for
`SUPPORT_TTL_SECONDS`; the first calls to a server wait for that one read, for a quarter of
their deadline at most (then they fetch in parallel while it goes on in the background): eight
calls at once to a new server would otherwise send it some ninety GETs over as many new
connections, where they now send one read and eight batches. A server that does not
take batches, whose metadata cannot be read, or whose batch fails or answers something that is
not a `batch-response` with one entry per request, is served by parallel GETs, within the
call's deadline (a failed batch is also remembered, so the next calls do not try again before
the support is checked anew).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from cachetools import TTLCache

from cds_service.jsondepth import TooDeep, loads_within
from cds_service.prefetch.fetch import FetchResult, FhirReader

__all__ = ["SUPPORT_TTL_SECONDS", "BatchSupport", "read_batch", "supports_batch"]

log = logging.getLogger(__name__)

SUPPORT_TTL_SECONDS = 3600.0
#: Servers whose support is remembered at once (least recently checked ones go first).
_SERVERS = 1000


def supports_batch(capability: Any) -> bool:
    """True when a CapabilityStatement lists the system interaction `batch`."""
    if not isinstance(capability, dict) or capability.get("resourceType") != "CapabilityStatement":
        return False
    for rest in capability.get("rest") or []:
        if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
            continue
        for interaction in rest.get("interaction") or []:
            if isinstance(interaction, dict) and interaction.get("code") == "batch":
                return True
    return False


class BatchSupport:
    """Which FHIR servers take batches: learned from their CapabilityStatement, per base URL."""

    def __init__(self, ttl_seconds: float = SUPPORT_TTL_SECONDS) -> None:
        self._known: TTLCache[str, bool] = TTLCache(maxsize=_SERVERS, ttl=ttl_seconds)
        self._checking: dict[str, asyncio.Task[None]] = {}

    def known(self, reader: FhirReader) -> bool | None:
        """True or False once learned; None while unknown (a check is then started)."""
        found = self._known.get(reader.base)
        if found is None and reader.base not in self._checking:
            task = asyncio.get_running_loop().create_task(self._check(reader))
            self._checking[reader.base] = task
            task.add_done_callback(lambda _: self._checking.pop(reader.base, None))
        return found

    async def wait_known(self, reader: FhirReader, patience: float) -> bool:
        """Whether the server takes batches, waiting up to `patience` seconds for its check
        (one check per server, whichever calls ask meanwhile); False when it is not learned in
        time (the check goes on in the background) or failed."""
        found = self.known(reader)
        if found is not None:
            return found
        checking = self._checking.get(reader.base)
        if checking is not None:
            # timed out, or the check itself failed: not known to take batches (for now)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(checking), patience)
        return bool(self._known.get(reader.base))

    def failed(self, reader: FhirReader) -> None:
        """A batch to this server failed: parallel GETs until its support is checked again."""
        self._known[reader.base] = False

    async def _check(self, reader: FhirReader) -> None:
        result = await reader.read("metadata")
        self._known[reader.base] = result.ok and supports_batch(result.resource)

    async def close(self) -> None:
        for task in list(self._checking.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _entry_result(entry: Any, url: str) -> FetchResult:
    """One batch-response entry read as the GET of `url` would have been."""
    if not isinstance(entry, dict) or not isinstance(entry.get("response"), dict):
        return FetchResult(False, error="batch entry without a response")
    status_text = str(entry["response"].get("status", ""))
    try:
        status = int(status_text.split(" ", 1)[0])
    except ValueError:
        return FetchResult(False, error=f"batch entry status {status_text[:20]!r}")
    resource = entry.get("resource")
    if not isinstance(resource, dict):
        resource = entry["response"].get("outcome")
    if status in (404, 410) and "?" not in url:
        return FetchResult(True, None)
    if status != 200:
        if isinstance(resource, dict) and resource.get("resourceType") == "OperationOutcome":
            return FetchResult(True, resource)
        return FetchResult(False, error=f"HTTP {status}")
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return FetchResult(False, error="batch entry is not a FHIR resource")
    return FetchResult(True, resource)


async def read_batch(reader: FhirReader, urls: Sequence[str]) -> list[FetchResult] | None:
    """The GETs of `urls` (relative to the base) as one batch; None when the batch as a whole
    failed (the caller then fetches them one by one)."""
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": url}} for url in urls],
    }
    response = await reader.post(orjson.dumps(bundle))
    if response is None:
        return None
    if response.status_code != 200:
        log.info("FHIR batch answered HTTP %d: fetching one by one", response.status_code)
        return None
    try:  # each answer sits 3 levels down: the Bundle, its `entry` array, the entry
        body = loads_within(response.content, reader.max_depth + 3)
    except TooDeep:  # one by one, only the answer nested too deep fails
        log.info("FHIR batch answer is nested too deep: fetching one by one")
        return None
    except ValueError:  # not JSON
        return None
    entries = body.get("entry") if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or body.get("resourceType") != "Bundle"
        or body.get("type") != "batch-response"
        or not isinstance(entries, list)
        or len(entries) != len(urls)
    ):
        log.info("FHIR batch answer is not a batch-response of %d entries", len(urls))
        return None
    return [_entry_result(entry, url) for entry, url in zip(entries, urls, strict=True)]
