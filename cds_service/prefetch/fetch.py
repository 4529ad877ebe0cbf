"""Reading from the client's FHIR server: one GET, a batch POST, and following `next` links.

An answer nested deeper than the reader's `max_depth` (`CDS_MAX_JSON_DEPTH` when serving) is a
failed read, like an answer that is not JSON: the walkers of the rules and the scores recurse,
and a server must not be able to end the call in a RecursionError.

The access token comes from the request's `fhirAuthorization`; it is sent only to `fhirServer`
and to URLs under it (a `next` link pointing elsewhere is not followed), and is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import httpx

from cds_service import tracing
from cds_service.jsondepth import DEFAULT_MAX_DEPTH, TooDeep, loads_within

__all__ = ["FetchResult", "FhirReader"]


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A resource (None when the server says it does not exist) or the reason it failed."""

    ok: bool
    resource: dict[str, Any] | None = None
    error: str | None = None


class FhirReader:
    """Reads from one FHIR server with one (optional) bearer token."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        token: str | None,
        slots: asyncio.Semaphore | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self._client = client
        self._slots = slots
        #: The deepest nesting accepted in an answer (`jsondepth.loads_within`).
        self.max_depth = max_depth
        self._base = base_url.rstrip("/")
        self._headers = {"Accept": "application/fhir+json, application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    @property
    def base(self) -> str:
        """The server's base URL (without a trailing slash)."""
        return self._base

    async def post(self, content: bytes) -> httpx.Response | None:
        """POST a Bundle (a batch) to the base; None when the request itself failed."""
        headers = {**self._headers, "Content-Type": "application/fhir+json"}
        with tracing.span("cds.fhir.batch") as span:
            try:
                async with self._slots or contextlib.nullcontext():
                    response = await self._client.post(self._base, content=content, headers=headers)
            except httpx.HTTPError as exc:
                span.set_attribute("error.type", type(exc).__name__)
                return None
            span.set_attribute("http.response.status_code", response.status_code)
        return response

    def owns(self, url: str) -> bool:
        """True when `url` lies under this server's base URL."""
        return url == self._base or url.startswith(self._base + "/")

    async def read(self, url: str) -> FetchResult:
        """GET a relative (to the base) or absolute (under the base) URL."""
        absolute = url if url.startswith(("http://", "https://")) else f"{self._base}/{url}"
        if not self.owns(absolute):
            return FetchResult(False, error="URL is outside fhirServer")
        resource_type = absolute[len(self._base) + 1 :].split("/", 1)[0].split("?", 1)[0]
        with tracing.span("cds.fhir.fetch") as span:
            span.set_attribute("fhir.resource_type", resource_type)  # never the URL: it has ids
            try:
                async with self._slots or contextlib.nullcontext():
                    response = await self._client.get(absolute, headers=self._headers)
            except httpx.HTTPError as exc:
                span.set_attribute("error.type", type(exc).__name__)
                return FetchResult(False, error=f"request failed ({type(exc).__name__})")
            span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code in (404, 410) and "?" not in url:
            return FetchResult(True, None)  # a read that found nothing: known empty
        try:
            body = loads_within(response.content, self.max_depth) if response.content else None
        except TooDeep as exc:
            return FetchResult(False, error=f"response {exc}")
        except ValueError:  # not JSON
            body = None
        if response.status_code != 200:
            if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
                return FetchResult(True, body)
            return FetchResult(False, error=f"HTTP {response.status_code}")
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            return FetchResult(False, error="response is not a FHIR resource")
        return FetchResult(True, body)

    async def remaining_pages(
        self, bundle: dict[str, Any], max_pages: int
    ) -> tuple[dict[str, Any], str | None]:
        """Follow `next` links and merge every page's entries into one Bundle.

        Returns the merged Bundle and, when not every page could be read, why.
        """
        entries = _entries(bundle)
        page = bundle
        pages = 1
        problem: str | None = None
        while (next_url := _next_link(page)) is not None:
            if pages >= max_pages:
                problem = f"stopped after {max_pages} pages"
                break
            result = await self.read(next_url)
            if not result.ok or result.resource is None:
                problem = f"next page unobtainable: {result.error or 'empty'}"
                break
            if result.resource.get("resourceType") != "Bundle":
                problem = "next page is not a Bundle"
                break
            page = result.resource
            pages += 1
            entries.extend(_entries(page))
        merged = {k: v for k, v in bundle.items() if k not in ("entry", "link")}
        merged["entry"] = entries
        if problem is None:
            merged["total"] = len(entries)
        return merged, problem


def _entries(bundle: dict[str, Any]) -> list[Any]:
    entries = bundle.get("entry")
    return list(entries) if isinstance(entries, list) else []


def _next_link(bundle: dict[str, Any]) -> str | None:
    links = bundle.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and url:
                return url
    return None


def has_next_page(bundle: dict[str, Any] | None) -> bool:
    """True for a Bundle with a `next` link."""
    if not bundle or bundle.get("resourceType") != "Bundle":
        return False
    return _next_link(bundle) is not None
