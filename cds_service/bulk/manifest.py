"""The Bulk Data completion manifest: the output files, the error/outcome files, paging.

Accepts Bulk Data 2.0 (``output``, ``error``) and later versions (``outcome`` in place of
``error``; ``link`` with relation ``next`` for a paged manifest). Relative URLs are resolved
against the URL the manifest came from; only http(s) URLs are accepted. ``requiresAccessToken``
defaults to false when absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

from cds_service.bulk.errors import BulkError

__all__ = ["Manifest", "ManifestFile", "parse_manifest"]


@dataclass(frozen=True, slots=True)
class ManifestFile:
    """One file of the manifest: its absolute URL, resource type and count when given."""

    url: str
    type: str | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest. `source_url` is where it was read (the status URL or a next page)."""

    source_url: str
    requires_access_token: bool
    output: tuple[ManifestFile, ...]
    errors: tuple[ManifestFile, ...] = ()
    deleted: tuple[ManifestFile, ...] = ()
    transaction_time: str | None = None
    request: str | None = None
    next_url: str | None = None


def parse_manifest(body: Any, *, source_url: str) -> Manifest:
    """The manifest in `body` (parsed JSON); BulkError when it is not one."""
    if not isinstance(body, dict):
        raise BulkError("the export manifest is not a JSON object")
    requires = body.get("requiresAccessToken", False)
    if not isinstance(requires, bool):
        raise BulkError("the export manifest's requiresAccessToken is not a boolean")
    transaction_time = body.get("transactionTime")
    request = body.get("request")
    return Manifest(
        source_url=source_url,
        requires_access_token=requires,
        output=_files(body, "output", source_url),
        errors=_files(body, "error", source_url) + _files(body, "outcome", source_url),
        deleted=_files(body, "deleted", source_url),
        transaction_time=transaction_time if isinstance(transaction_time, str) else None,
        request=request if isinstance(request, str) else None,
        next_url=_next_link(body.get("link"), source_url),
    )


def _files(body: dict[str, Any], member: str, base: str) -> tuple[ManifestFile, ...]:
    entries = body.get(member)
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise BulkError(f"the export manifest's {member!r} is not a list")
    files = []
    for index, entry in enumerate(entries):
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url:
            raise BulkError(f"the export manifest's {member}[{index}] has no url")
        absolute = urljoin(base, url)
        if urlsplit(absolute).scheme not in ("http", "https"):
            raise BulkError(f"the export manifest's {member}[{index}] url is not http(s)")
        kind = entry.get("type")
        count = entry.get("count")
        files.append(
            ManifestFile(
                absolute,
                kind if isinstance(kind, str) else None,
                count if isinstance(count, int) and not isinstance(count, bool) else None,
            )
        )
    return tuple(files)


def _next_link(links: Any, base: str) -> str | None:
    """The absolute URL of the ``next`` page; None for none, or for a fragment-only stub."""
    if not isinstance(links, list):
        return None
    for link in links:
        if not isinstance(link, dict) or link.get("relation") != "next":
            continue
        url = link.get("url")
        if not isinstance(url, str) or not url:
            return None
        absolute = urljoin(base, url)
        if urlsplit(absolute).scheme not in ("http", "https"):
            return None
        if urldefrag(absolute).url == urldefrag(base).url:
            return None  # "#pending" and the like: nothing more to fetch yet
        return absolute
    return None
