"""Downloading a manifest's files as streams, line by line, into resources and problems.

Output files yield `NdjsonResource` items (and `NdjsonProblem` for bad lines); the ``error`` /
``outcome`` files yield one problem of kind "outcome" per OperationOutcome. A file that cannot be
downloaded (HTTP error, connection lost) becomes a problem of kind "file" and the next file
follows. The bearer token is sent only when the manifest says ``requiresAccessToken: true``, and
only to the origin the manifest came from (a file elsewhere is reported, not fetched); without
the token, redirects are followed (pre-signed storage URLs), with it they are not.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import httpx

from cds_service.bulk.errors import BulkError, outcome_text
from cds_service.bulk.httputil import (
    TokenProvider,
    check_token_target,
    json_body,
    redact_url,
    send,
)
from cds_service.bulk.manifest import Manifest, ManifestFile, parse_manifest
from cds_service.bulk.ndjson import (
    DEFAULT_MAX_LINE_BYTES,
    NdjsonItem,
    NdjsonProblem,
    read_ndjson_stream,
)
from cds_service.bulk.progress import ProgressCallback, report

__all__ = ["download", "download_file", "fetch_manifest_page"]

_NDJSON_ACCEPT = {"Accept": "application/fhir+ndjson"}


async def download(
    client: httpx.AsyncClient,
    manifest: Manifest,
    *,
    token: TokenProvider | None = None,
    on_progress: ProgressCallback | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> AsyncGenerator[NdjsonItem, None]:
    """Every output file's items, then the error files' OperationOutcomes as problems."""
    use_token = token if manifest.requires_access_token else None
    files = [(f, False) for f in manifest.output] + [(f, True) for f in manifest.errors]
    for number, (file, is_error) in enumerate(files, start=1):
        report(on_progress, "download", _describe(file, is_error, number, len(files)))
        async with aclosing(
            download_file(
                client, file.url, manifest, token=use_token, max_line_bytes=max_line_bytes
            )
        ) as items:
            async for item in items:
                yield _as_outcome(item) if is_error else item


async def download_file(
    client: httpx.AsyncClient,
    url: str,
    manifest: Manifest,
    *,
    token: TokenProvider | None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> AsyncGenerator[NdjsonItem, None]:
    """One file's items; `token` (when given) is sent only to the manifest's origin."""
    source = redact_url(url)
    if token is not None:
        try:
            check_token_target(url, manifest.source_url)
        except BulkError as exc:
            yield NdjsonProblem(source, 0, exc.message, kind="file")
            return
    counter = _Counter()
    for attempt in (1, 2):
        headers = dict(_NDJSON_ACCEPT)
        if token is not None:
            headers["Authorization"] = f"Bearer {await token.get()}"
        try:
            async with client.stream(
                "GET", url, headers=headers, follow_redirects=token is None
            ) as response:
                if response.status_code == 401 and token is not None and attempt == 1:
                    token.invalidate()
                    continue
                if response.status_code != 200:
                    reason = f"download failed (HTTP {response.status_code})"
                    yield NdjsonProblem(source, 0, reason, kind="file")
                    return
                chunks = counter.count(response.aiter_bytes())
                async with aclosing(
                    read_ndjson_stream(chunks, source, max_line_bytes=max_line_bytes)
                ) as items:
                    async for item in items:
                        yield item
            return
        except httpx.HTTPError as exc:
            line = counter.lines + 1 if counter.started else 0
            reason = f"download interrupted ({type(exc).__name__})"
            yield NdjsonProblem(source, line, reason, kind="file")
            return


async def fetch_manifest_page(
    client: httpx.AsyncClient, url: str, previous: Manifest, *, token: TokenProvider | None
) -> Manifest:
    """The next page of a paged manifest (token rules as for files)."""
    use_token = token if previous.requires_access_token else None
    response = await send(
        client,
        "GET",
        url,
        headers={"Accept": "application/json"},
        token=use_token,
        trusted=previous.source_url,
    )
    if response.status_code != 200:
        raise BulkError(
            f"the manifest page {redact_url(url)} answered HTTP {response.status_code}",
            server_status=response.status_code,
        )
    return parse_manifest(json_body(response), source_url=url)


def _as_outcome(item: NdjsonItem) -> NdjsonItem:
    if isinstance(item, NdjsonProblem):
        return item
    text = outcome_text(item.resource)
    if text is None:
        text = f"a {item.resource_type} in an error file"
    return NdjsonProblem(item.source, item.line, text, kind="outcome", outcome=item.resource)


def _describe(file: ManifestFile, is_error: bool, number: int, total: int) -> str:
    what = "errors" if is_error else file.type or "resources"
    count = f", {file.count} resources" if file.count is not None else ""
    return f"file {number}/{total} ({what}{count}): {redact_url(file.url)}"


class _Counter:
    """Counts the newlines passing through, to say on which line a download broke off."""

    def __init__(self) -> None:
        self.lines = 0
        self.started = False

    async def count(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.started = True
            self.lines += chunk.count(b"\n")
            yield chunk
