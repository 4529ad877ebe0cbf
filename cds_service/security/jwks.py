"""Tenants' public keys: static sets, or fetched from the tenant's `jwks_url` and cached.

A fetched set is kept for `ttl` seconds; a token with a `kid` the cached set lacks triggers a
refetch, at most once a minute per tenant (so a stream of bogus `kid`s cannot make us hammer the
EHR's key server); when the key server is down, the cached set keeps serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from cds_service.security.tenants import Tenant

__all__ = ["KeyStore"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    keys: dict[str, PyJWK]
    fetched_at: float
    last_attempt: float


def _parse(key_set: dict[str, Any]) -> dict[str, PyJWK]:
    keys: dict[str, PyJWK] = {}
    for raw in key_set.get("keys", []) if isinstance(key_set, dict) else []:
        if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(raw)
        except PyJWKError:
            continue  # a key we cannot use (unknown type, private-only fields…) is skipped
        keys[str(raw.get("kid", ""))] = key
    return keys


class KeyStore:
    """Signing keys per tenant."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        ttl: float = 3600.0,
        refetch_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._cache: dict[str, _Entry] = {}
        # Inline key sets, parsed once per tenant (and again only if the tenant's set changes).
        self._static: dict[str, tuple[object, dict[str, PyJWK]]] = {}

    async def key(self, tenant: Tenant, kid: str) -> PyJWK | None:
        """The tenant's key with this `kid`, or None."""
        if tenant.jwks is not None:
            parsed = self._static.get(tenant.id)
            if parsed is None or parsed[0] is not tenant.jwks:
                parsed = self._static[tenant.id] = (tenant.jwks, _parse(tenant.jwks))
            return parsed[1].get(kid)
        entry = self._cache.get(tenant.id)
        now = self._clock()
        stale = entry is None or now - entry.fetched_at > self._ttl
        unknown = entry is not None and kid not in entry.keys
        may_fetch = entry is None or now - entry.last_attempt >= self._refetch_interval
        if (stale or unknown) and may_fetch:
            entry = await self._fetch(tenant, entry, now)
        return entry.keys.get(kid) if entry is not None else None

    async def _fetch(self, tenant: Tenant, entry: _Entry | None, now: float) -> _Entry | None:
        assert tenant.jwks_url is not None
        try:
            response = await self._client.get(
                tenant.jwks_url, headers={"Accept": "application/json"}
            )
            response.raise_for_status()
            keys = _parse(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            log.warning(
                "JWKS of tenant %s unavailable (%s); using the cached keys",
                tenant.id,
                type(exc).__name__,
            )
            if entry is not None:
                entry.last_attempt = now
            else:
                self._cache[tenant.id] = _Entry({}, float("-inf"), now)
            return self._cache.get(tenant.id)
        fresh = _Entry(keys, now, now)
        self._cache[tenant.id] = fresh
        return fresh
