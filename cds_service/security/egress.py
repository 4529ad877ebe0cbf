"""Where the service's FHIR client may connect: checked on the resolved address, pinned to it.

`security/ssrf.py` decides which base URLs a call may fetch from (the tenant's `fhir_servers`;
outside development nothing without a tenant). `EgressGuard` adds what a URL check cannot see:

- the addresses a name resolves to: link-local addresses (169.254.0.0/16, fe80::/10, where the
  cloud metadata services answer), the metadata services' names and addresses, unspecified,
  multicast and reserved addresses are never contacted, in any mode and even when listed;
- DNS rebinding: the connection goes to the address that was checked (`Host` and TLS's SNI and
  certificate check keep the name), so a second resolution cannot send it elsewhere. A
  connection made for one name is never reused for another on the same address.

The service's FHIR client (`http11.HTTP11Transport`) asks the guard once per connection it
opens, and connects to the answer: a kept-alive connection was checked when it was opened, so
requests on it cost no check. `GuardedTransport` does the same for any other transport, per
request, by rewriting the URL's host to the checked address (one pool per name); the tests of
everything else run the guard that way over `httpx.MockTransport`.

A name's checked address is kept for `RESOLUTION_SECONDS` (30 s; a name that did not resolve, or
resolved to a refused address, is asked again each time): each FHIR request used to resolve its
server's name anew, in the resolver's thread, about 0.24 M instructions and a thread handoff per
request (ten of them for a missing prefetch from a server that takes no batches). A name's
address may thus lag a DNS change by that long; the connection still goes where was checked.

Loopback and private addresses are reached only through URLs `ssrf.fetch_refusal` allowed: a
tenant's listed `fhir_servers` (an EHR on the hospital's network), or any URL in development.

A refusal fails the request at once with `EgressRefused` (an `httpx.TransportError`: the data is
unobtainable, so 412 when it was required), logged with its reason and counted
(`cds_fetch_refusals_total{reason}`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Final, NoReturn

import httpx
from cachetools import TTLCache

__all__ = [
    "RESOLUTION_SECONDS",
    "EgressGuard",
    "EgressRefused",
    "GuardedTransport",
    "address_refusal",
    "system_resolver",
]

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: How long a name's checked address is used without resolving the name again.
RESOLUTION_SECONDS: Final = 30.0
_NAMES: Final = 1024  # names whose address is kept at once (least recently resolved go first)

# Cloud metadata services, by name and by address (those not link-local already).
METADATA_NAMES: Final = frozenset(
    {
        *("metadata", "metadata.google.internal", "metadata.goog", "instance-data"),
        *("instance-data.ec2.internal", "metadata.azure.com", "metadata.platformequinix.com"),
    }
)
METADATA_ADDRESSES: Final = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "169.254.169.254")
)


class EgressRefused(httpx.TransportError):
    """The FHIR client refused to connect; the message says why (never a token or patient)."""


def address_refusal(address: Address) -> str | None:
    """Why no request may go to this address, whatever the configuration; None when it may."""
    if address in METADATA_ADDRESSES:
        return "cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_refusal(address.ipv4_mapped)
    if address.is_link_local:
        return "link-local address"
    if address.is_unspecified:
        return "unspecified address"
    if address.is_multicast:
        return "multicast address"
    if address.is_loopback:  # ::1 lies in a reserved block: loopback is decided before it
        return None
    if address.is_reserved:
        return "reserved address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host` (TCP)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressGuard:
    """Where the FHIR client may connect: `address(host, port)` is the checked address to
    connect to, or raises (`EgressRefused`, or `httpx.ConnectError` for a name that does not
    resolve). Each refusal is logged with its reason and passed to `on_refusal`."""

    def __init__(
        self,
        *,
        resolver: Resolver = system_resolver,
        on_refusal: Callable[[str], None] = lambda reason: None,
        resolution_seconds: float = RESOLUTION_SECONDS,
    ) -> None:
        self._resolver = resolver
        self._on_refusal = on_refusal
        self._resolved: TTLCache[tuple[str, int], str] = TTLCache(_NAMES, resolution_seconds)

    async def address(self, host: str, port: int) -> str:
        name = host.lower().rstrip(".")
        if name in METADATA_NAMES:
            self._refuse(host, "cloud metadata name")
        literal, reason = _literal(name)
        if reason is not None:
            self._refuse(host, reason)
        if literal is not None:
            return literal
        found = self._resolved.get((name, port))
        if found is not None:
            return found
        try:
            resolved = await self._resolver(name, port)
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve the FHIR server's name ({exc})") from None
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
        if not addresses:
            raise httpx.ConnectError("the FHIR server's name resolves to no address")
        for address in addresses:  # every answer: a mixed set is refused whole
            reason = address_refusal(address)
            if reason is not None:
                self._refuse(host, reason)
        self._resolved[(name, port)] = checked = str(addresses[0])
        return checked

    def _refuse(self, host: str, reason: str) -> NoReturn:
        log.warning("not contacting FHIR server %s: %s", host, reason)
        self._on_refusal(reason)
        raise EgressRefused(f"refused to contact {host}: {reason}")


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks and pins every request's host for a transport that connects where the URL says
    (see the module docstring): the request goes on with the checked address in its URL and the
    name in `Host` (and in the `sni_hostname` extension for TLS). `HTTP11Transport` needs no
    such rewriting: given `EgressGuard.address`, it checks each connection it opens."""

    def __init__(
        self,
        pool: Callable[[], httpx.AsyncBaseTransport],
        *,
        resolver: Resolver = system_resolver,
        on_refusal: Callable[[str], None] = lambda reason: None,
        resolution_seconds: float = RESOLUTION_SECONDS,
    ) -> None:
        self._pool = pool
        self._pools: dict[str, httpx.AsyncBaseTransport] = {}
        self._guard = EgressGuard(
            resolver=resolver, on_refusal=on_refusal, resolution_seconds=resolution_seconds
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = await self._guard.address(host, port)
        pinned = request.url.copy_with(host=address)
        headers = request.headers.copy()
        headers["Host"] = request.url.netloc.decode("ascii")
        extensions = dict(request.extensions)
        if request.url.scheme == "https":
            extensions.setdefault("sni_hostname", host)
        pinned_request = httpx.Request(
            request.method,
            pinned,
            headers=headers,
            stream=request.stream,
            extensions=extensions,
        )
        transport = self._pools.get(host)
        if transport is None:
            transport = self._pools[host] = self._pool()
        return await transport.handle_async_request(pinned_request)

    async def aclose(self) -> None:
        for transport in self._pools.values():
            await transport.aclose()


@functools.lru_cache(maxsize=256)
def _literal(name: str) -> tuple[str | None, str | None]:
    """(the address, None) when `name` is an IP address that may be contacted, (None, why not)
    when it may not, (None, None) when it is a name to resolve."""
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None, None
    reason = address_refusal(address)
    return (None, reason) if reason is not None else (str(address), None)
