"""A Bulk Data Access (v2) ``$export`` client: kick-off, status polling, download, cancel.

`export_resources` ties the steps together and yields the same items as ndjson.py. When the
consumer stops early (``break`` inside ``async with aclosing(...)``), or the task is cancelled
(Ctrl-C under ``asyncio.run`` cancels the main task), or anything fails, the export is cancelled
on the server with ``DELETE`` on its status URL; after a complete download the finished export is
deleted the same way (``delete_when_done``) so the server can drop the files. Always consume it
inside ``contextlib.aclosing`` so that this happens at once, not when the generator is collected::

    async with aclosing(export_resources(client, base, group_id="g1", token=ts)) as items:
        async for item in items:
            ...

Only URLs the server returned are followed; the access token goes to the FHIR server's origin
only (see httputil.py). Polling honours ``Retry-After`` (seconds or HTTP-date) on 202 and 429;
without it the wait doubles from 1 s to at most 60 s. A 5xx whose OperationOutcome has a
transient issue code (transient, lock-error, no-store, timeout, throttled) is retried the same
way, as are up to three network failures in a row; any other error status ends the export with
a BulkError carrying the OperationOutcome's diagnostics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from cds_service.bulk.download import download, download_file, fetch_manifest_page
from cds_service.bulk.errors import BulkError, clean_text, outcome_text
from cds_service.bulk.httputil import (
    TokenProvider,
    TransportFailure,
    json_body,
    origin,
    parse_retry_after,
    redact_url,
    require_secure,
    send,
)
from cds_service.bulk.manifest import Manifest, parse_manifest
from cds_service.bulk.ndjson import DEFAULT_MAX_LINE_BYTES, NdjsonItem, NdjsonProblem
from cds_service.bulk.progress import ExportProgress, ProgressCallback, report
from cds_service.clock import system_clock
from cds_service.types import Clock

__all__ = [
    "DEFAULT_POLL_TIMEOUT",
    "ExportProgress",
    "cancel",
    "download",
    "download_file",
    "export_resources",
    "kick_off",
    "poll",
]

log = logging.getLogger(__name__)

DEFAULT_POLL_TIMEOUT = 6 * 3600.0
CANCEL_TIMEOUT = 10.0
MAX_NETWORK_FAILURES = 3
_KICK_OFF_HEADERS = {"Accept": "application/fhir+json", "Prefer": "respond-async"}
_TRANSIENT_CODES = {"transient", "lock-error", "no-store", "timeout", "throttled"}

Sleep = Callable[[float], Awaitable[None]]


async def kick_off(
    client: httpx.AsyncClient,
    fhir_base: str,
    *,
    group_id: str | None = None,
    types: Sequence[str] | None = None,
    since: str | None = None,
    token: TokenProvider | None = None,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Start a Group (`group_id`) or Patient-level export; returns the status URL."""
    base = fhir_base.rstrip("/")
    if token is not None:
        require_secure(base, "the FHIR server URL")
    path = f"Group/{_check_id(group_id)}/$export" if group_id is not None else "Patient/$export"
    params: dict[str, str] = {}
    if types:
        params["_type"] = ",".join(_check_type(t) for t in types)
    if since is not None:
        params["_since"] = _check_instant(since)
    url = f"{base}/{path}" + (f"?{urlencode(params, safe=',:')}" if params else "")
    response = await send(
        client, "GET", url, headers=dict(_KICK_OFF_HEADERS), token=token, trusted=base
    )
    if response.status_code != 202:
        raise _server_error("the $export kick-off", response)
    location: str | None = response.headers.get("Content-Location")
    if not location:
        raise BulkError("the $export kick-off answered 202 without a Content-Location")
    status_url = urljoin(str(response.url), location)
    if urlsplit(status_url).scheme not in ("http", "https"):
        raise BulkError("the $export status URL is not http(s)")
    if token is not None and origin(status_url) != origin(base):
        raise BulkError(
            f"the status URL {redact_url(status_url)} is not on the FHIR server's origin; "
            "the access token is not sent there"
        )
    report(on_progress, "kick-off", f"export accepted; status at {redact_url(status_url)}")
    return status_url


async def poll(
    client: httpx.AsyncClient,
    status_url: str,
    *,
    token: TokenProvider | None = None,
    timeout: float = DEFAULT_POLL_TIMEOUT,
    on_progress: ProgressCallback | None = None,
    initial_backoff: float = 1.0,
    max_backoff: float = 60.0,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Clock = system_clock,
) -> Manifest:
    """Poll the status URL until the manifest arrives; BulkError on failure or after `timeout`.

    `clock` times the wait; `wall_clock` reads a Retry-After given as an HTTP date."""
    deadline = clock() + timeout
    backoff = initial_backoff
    failures = 0
    while True:
        try:
            response = await send(
                client,
                "GET",
                status_url,
                headers={"Accept": "application/json"},
                token=token,
                trusted=status_url,
            )
        except TransportFailure as exc:
            failures += 1
            if failures >= MAX_NETWORK_FAILURES:
                raise
            wait, message = None, f"retrying after a network failure ({exc.message})"
        else:
            failures = 0
            if response.status_code == 200:
                manifest = parse_manifest(json_body(response), source_url=status_url)
                files = f"{len(manifest.output)} output, {len(manifest.errors)} error file(s)"
                report(on_progress, "complete", f"export complete: {files}")
                return manifest
            wait = parse_retry_after(response.headers.get("Retry-After"), wall_clock())
            message = _waiting_message(response)
        if wait is None:
            wait, backoff = backoff, min(backoff * 2, max_backoff)
        remaining = deadline - clock()
        if remaining <= 0:
            raise BulkError(f"the export did not finish within {timeout:g} s")
        wait = min(wait, remaining)
        report(on_progress, "in-progress", message, wait)
        await sleep(wait)


async def cancel(
    client: httpx.AsyncClient, status_url: str, *, token: TokenProvider | None = None
) -> bool:
    """DELETE the export: True when the server accepted, False when it no longer knows it."""
    response = await send(
        client,
        "DELETE",
        status_url,
        headers={"Accept": "application/fhir+json"},
        token=token,
        trusted=status_url,
    )
    if response.status_code in (200, 202, 204):
        return True
    if response.status_code in (404, 410):
        return False
    raise _server_error("cancelling the export", response)


async def export_resources(
    client: httpx.AsyncClient,
    fhir_base: str,
    *,
    group_id: str | None = None,
    types: Sequence[str] | None = None,
    since: str | None = None,
    token: TokenProvider | None = None,
    on_progress: ProgressCallback | None = None,
    poll_timeout: float = DEFAULT_POLL_TIMEOUT,
    delete_when_done: bool = True,
    max_manifest_pages: int = 1000,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> AsyncGenerator[NdjsonItem, None]:
    """Kick off, poll, and yield every resource and problem of the export's files."""
    status_url = await kick_off(
        client,
        fhir_base,
        group_id=group_id,
        types=types,
        since=since,
        token=token,
        on_progress=on_progress,
    )
    finished = False
    try:
        manifest = await poll(
            client, status_url, token=token, timeout=poll_timeout, on_progress=on_progress
        )
        seen = {status_url}
        while True:
            async with aclosing(
                download(
                    client,
                    manifest,
                    token=token,
                    on_progress=on_progress,
                    max_line_bytes=max_line_bytes,
                )
            ) as items:
                async for item in items:
                    yield item
            next_url = manifest.next_url
            if next_url is None:
                break
            if next_url in seen or len(seen) >= max_manifest_pages:
                reason = "manifest paging stopped (a page repeats or there are too many pages)"
                yield NdjsonProblem(redact_url(next_url), 0, reason, kind="file")
                break
            seen.add(next_url)
            report(on_progress, "page", f"manifest page {len(seen)}: {redact_url(next_url)}")
            manifest = await fetch_manifest_page(client, next_url, manifest, token=token)
        finished = True
    finally:
        if not finished or delete_when_done:
            await _release(client, status_url, token, finished, on_progress)


async def _release(
    client: httpx.AsyncClient,
    status_url: str,
    token: TokenProvider | None,
    finished: bool,
    on_progress: ProgressCallback | None,
) -> None:
    """DELETE the export, never raising: this runs while another exception may be on its way."""
    what = "delete the finished" if finished else "cancel the"
    try:
        async with asyncio.timeout(CANCEL_TIMEOUT):
            await cancel(client, status_url, token=token)
    except (BulkError, TimeoutError) as exc:
        log.warning("could not %s export at %s: %s", what, redact_url(status_url), exc)
        return
    if finished:
        report(on_progress, "deleted", f"export deleted on the server: {redact_url(status_url)}")
    else:
        report(on_progress, "cancelled", f"export cancelled: {redact_url(status_url)}")


def _waiting_message(response: httpx.Response) -> str:
    """Why polling goes on; BulkError when the status means the export failed."""
    status = response.status_code
    if status == 202:
        progress = response.headers.get("X-Progress")
        return clean_text(progress, 100) if progress else "in progress"
    if status == 429:
        return "the server asks to poll less often (HTTP 429)"
    body = json_body(response)
    if status >= 500 and _is_transient(body):
        return f"transient server error (HTTP {status}): {outcome_text(body)}"
    raise _server_error("the export", response, body)


def _is_transient(body: Any) -> bool:
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return False
    issues = body.get("issue")
    codes = (
        {i.get("code") for i in issues if isinstance(i, dict)}
        if isinstance(issues, list)
        else set()
    )
    return bool(codes) and codes <= _TRANSIENT_CODES


def _server_error(what: str, response: httpx.Response, body: Any = None) -> BulkError:
    body = json_body(response) if body is None else body
    detail = outcome_text(body)
    message = f"{what} failed (HTTP {response.status_code})"
    return BulkError(
        f"{message}: {detail}" if detail else message, server_status=response.status_code
    )


def _check_id(value: str) -> str:
    if not (0 < len(value) <= 64) or not all(
        c.isascii() and (c.isalnum() or c in "-.") for c in value
    ):
        raise BulkError(f"{value!r} is not a valid FHIR id")
    return value


def _check_type(value: str) -> str:
    if not (value.isascii() and value.isalpha() and value[:1].isupper()):
        raise BulkError(f"{value!r} is not a FHIR resource type")
    return value


def _check_instant(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BulkError(f"_since {value!r} is not a FHIR instant") from None
    if parsed.tzinfo is None:
        raise BulkError(f"_since {value!r} needs a time zone")
    return value
