"""The FHIR client's HTTP/1.1 transport: asyncio's protocols and llhttp, under httpx's client.

httpx's own transport (httpcore, h11 and anyio, all in Python) spent about 1 ms of CPU on one
120 KB batch answer, more than parsing its JSON: h11 reads the head byte by byte in Python,
copies the body several times on its way in, and every read passes anyio's cancel scopes. This
transport hands each arrival to llhttp (the C parser behind Node.js; `httptools`, which uvicorn
already serves with) from the protocol's `data_received`, and joins the body once. It answers the
same batch in about a third of the CPU (`docs/benchmarks.md`). httpx's client stays in front of
it: its requests, responses (and their `Content-Encoding` decoding), exceptions and
`MockTransport` are unchanged for the rest of the service.

What it does:

- HTTP/1.1 over TCP or TLS (`ssl_context`; the certificate is checked against the request's
  `sni_hostname` extension when given, else the URL's host);
- each connection opened to the address `connect_address(host, port)` gives (the service passes
  `security/egress.EgressGuard.address`, which refuses cloud metadata, link-local and other
  addresses and pins the connection to the address it checked; it may raise, failing the
  request), else to the URL's host;
- keep-alive connections, reused per origin (scheme, host, port, TLS name), the last used first;
  an idle connection is closed after `keepalive_expiry` seconds, when its server closes it, or
  when it sends anything unasked; at most `max_keepalive_connections` wait idle, and opening a
  connection beyond `max_connections` closes the oldest idle one first;
- at most `max_connections` requests in flight; the others wait, for the `pool` timeout at most;
- the timeouts of `request.extensions["timeout"]` as httpx means them: `connect`, `pool`,
  `write` (until the request is handed to the kernel) and `read` (silence while an answer is
  awaited or arrives, not its whole duration);
- a request whose connection was reused and which the server closed before answering a byte is
  sent once more on a new connection when its method is idempotent (GET, HEAD, OPTIONS); any
  other failure is not retried;
- answers delimited by `Content-Length`, by chunks or by the end of the connection; interim
  `1xx` answers are skipped; an answer to a `HEAD` has no body;
- a header name that is not a token, or a value or target with CR, LF or NUL, never leaves
  (`httpx.LocalProtocolError`): a bearer token from a hook request cannot add a header;
- a request that fails or is cancelled (the call's deadline) closes its connection: a connection
  is reused only after a whole answer.

Errors are httpx's: `ConnectError`, `ConnectTimeout`, `PoolTimeout`, `WriteError`,
`WriteTimeout`, `ReadError`, `ReadTimeout`, `RemoteProtocolError` and `LocalProtocolError`.
HTTP/2, proxies and `Expect: 100-continue` are not spoken (the FHIR client never used them).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

import httptools
import httpx

__all__ = ["HTTP11Transport"]

_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS"})
# RFC 9110 §5.1 and §5.5: a field name is a token; no value may hold CR, LF or NUL.
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSAFE_VALUE: Final = re.compile(rb"[\x00\r\n]")
_UNSAFE_TARGET: Final = re.compile(rb"[\x00-\x20\x7f]")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_NO_TIMEOUT: Final[dict[str, float | None]] = {}
_LIMITS: Final = httpx.Limits(max_connections=20, max_keepalive_connections=20)

Origin = tuple[str, str, int, str]
Connector = Callable[[str, int], Awaitable[str]]


class _Stale(Exception):
    """A reused connection was closed before any byte of the answer came."""


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection and the answer awaited on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: Origin) -> None:
        self.origin = origin
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[httpx.Response] | None = None
        self._head_only = False
        self._received = False
        self._headers_done = False
        self._complete = False
        self._status = 0
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._keep_alive = False
        self._last_arrival = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout: float | None = None
        self._writable: asyncio.Future[None] | None = None

    # asyncio's protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports (what `serve` runs on) do not derive from asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._complete:  # bytes nobody asked for: never reuse
            self.close()
            return
        self._received = True
        self._last_arrival = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols unasked"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer ({exc})"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and self._ends_with_connection():
            self._finish()  # a body delimited by the end of the connection
        elif not self._received and self.reused:
            waiter.set_exception(_Stale())
        elif not self._received:
            waiter.set_exception(httpx.RemoteProtocolError("the server closed without answering"))
        else:
            waiter.set_exception(httpx.ReadError("the server closed before the answer ended"))

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # llhttp's callbacks (httptools)

    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request: stop reading, never reuse
            raise httpx.RemoteProtocolError("the server sent more than one answer")
        self._headers = []
        self._chunks = []
        self._reason = b""
        self._headers_done = False

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        if self._status < 200:
            return  # an interim answer: the real one follows
        self._headers_done = True
        self._keep_alive = self._parser.should_keep_alive()
        if self._head_only:  # llhttp would wait for a body the answer to a HEAD has not
            self._keep_alive = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if self._status >= 200 and not self._complete:
            self._finish()

    # the exchange

    async def exchange(
        self, message: bytes, head_only: bool, timeouts: dict[str, float | None]
    ) -> httpx.Response:
        """Send one request and wait for its whole answer."""
        transport = self._transport
        if transport is None or self.closed:
            raise self._closed_error()
        waiter: asyncio.Future[httpx.Response] = self._loop.create_future()
        self._waiter = waiter
        self._head_only = head_only
        self._received = self._complete = self._headers_done = False
        self._last_arrival = self._loop.time()
        transport.write(message)
        if self._writable is not None:
            try:
                async with asyncio.timeout(timeouts.get("write")):
                    await asyncio.shield(self._writable)
            except TimeoutError:
                raise httpx.WriteTimeout("the request could not be sent in time") from None
            if self.closed and not waiter.done():
                raise self._closed_error()
        self._read_timeout = timeouts.get("read")
        if self._read_timeout is not None:
            self._timer = self._loop.call_later(self._read_timeout, self._check_silence)
        try:
            return await waiter
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    @property
    def reusable(self) -> bool:
        """True after a whole answer on a connection both sides keep open."""
        return self._complete and self._keep_alive and not self.closed

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once (a failed or cancelled request)."""
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def _closed_error(self) -> Exception:
        """Sending on a closed connection: stale when it was reused (the caller may retry)."""
        return _Stale() if self.reused else httpx.WriteError("the connection is closed")

    def _finish(self) -> None:
        """The answer is whole: hand it over (what follows cannot change it)."""
        self._complete = True
        if self._waiter is None or self._waiter.done():
            return
        try:  # httpx decodes the body here (Content-Encoding)
            response = httpx.Response(
                self._status,
                headers=self._headers,
                content=b"".join(self._chunks),
                extensions={"http_version": b"HTTP/1.1", "reason_phrase": self._reason},
            )
        except httpx.HTTPError as exc:  # a body its encoding does not decode
            self._keep_alive = False
            self._waiter.set_exception(exc)
        else:
            self._waiter.set_result(response)

    def _fail(self, error: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self.abort()

    def _ends_with_connection(self) -> bool:
        """True when the answer's body runs to the end of the connection (no length, no chunks)."""
        if self._status in (204, 304) or self._head_only:
            return True
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == b"content-length" or (
                lowered == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return False
        return True

    def _check_silence(self) -> None:
        assert self._read_timeout is not None
        silent = self._loop.time() - self._last_arrival
        if silent >= self._read_timeout:
            self._timer = None
            self._fail(httpx.ReadTimeout("the server was silent too long"))
        else:
            self._timer = self._loop.call_later(self._read_timeout - silent, self._check_silence)


class HTTP11Transport(httpx.AsyncBaseTransport):
    """An httpx transport speaking HTTP/1.1 over pooled keep-alive connections (module doc)."""

    def __init__(
        self,
        *,
        limits: httpx.Limits = _LIMITS,
        ssl_context: ssl.SSLContext | None = None,
        connect_address: Connector | None = None,
    ) -> None:
        self._connect_address = connect_address
        self._max_connections = limits.max_connections
        idle = limits.max_keepalive_connections
        self._max_idle = idle if idle is not None else limits.max_connections
        # None: idle connections are kept until their server closes them
        self._expiry = limits.keepalive_expiry if limits.keepalive_expiry is not None else 1e18
        self._ssl_context = ssl_context
        self._slots = asyncio.Semaphore(limits.max_connections) if limits.max_connections else None
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._busy = 0
        self._swept = 0.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"no HTTP/1.1 over {scheme!r}")
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or _NO_TIMEOUT
        sni = request.extensions.get("sni_hostname") or url.host
        origin = (scheme, url.host, url.port or _DEFAULT_PORTS[scheme], str(sni))
        message = await _message(request)
        head_only = request.method == "HEAD"
        if self._slots is None:
            return await self._send(origin, message, head_only, request.method, timeouts)
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection was free in time") from None
        try:
            return await self._send(origin, message, head_only, request.method, timeouts)
        finally:
            self._slots.release()

    async def _send(
        self,
        origin: Origin,
        message: bytes,
        head_only: bool,
        method: str,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        self._busy += 1  # this request's connection, from before it is opened
        try:
            connection = self._reuse(origin) or await self._connect(origin, timeouts)
            try:
                response = await connection.exchange(message, head_only, timeouts)
            except _Stale:
                connection.abort()
                if method not in _IDEMPOTENT:
                    raise httpx.RemoteProtocolError(
                        "the server closed the kept-alive connection without answering"
                    ) from None
                connection = await self._connect(origin, timeouts)
                response = await connection.exchange(message, head_only, timeouts)
            except BaseException:
                connection.abort()
                raise
        finally:
            self._busy -= 1
        if connection.reusable:
            self._keep(connection)
        else:
            connection.close()
        return response

    def _reuse(self, origin: Origin) -> _Connection | None:
        """The connection to `origin` used last, if one waits idle and may still be used."""
        waiting = self._idle.get(origin)
        if not waiting:
            return None
        now = asyncio.get_running_loop().time()
        while waiting:
            connection = waiting.pop()
            self._idle_count -= 1
            if not connection.closed and now - connection.idle_since < self._expiry:
                connection.reused = True
                return connection
            connection.close()
        return None

    def _keep(self, connection: _Connection) -> None:
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1
        if now - self._swept >= 1.0:  # connections left idle too long, or closed by their server
            self._swept = now
            self._close_idle(lambda c: c.closed or now - c.idle_since >= self._expiry)
        while self._max_idle is not None and self._idle_count > self._max_idle:
            self._close_oldest_idle()

    async def _connect(self, origin: Origin, timeouts: dict[str, float | None]) -> _Connection:
        if self._max_connections is not None:  # `_busy` counts the connection being opened
            while self._idle_count and self._busy + self._idle_count > self._max_connections:
                self._close_oldest_idle()
        scheme, host, port, sni = origin
        loop = asyncio.get_running_loop()
        tls: dict[str, Any] = {}
        if scheme == "https":
            tls = {"ssl": self._tls(), "server_hostname": sni}
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                address = host
                if self._connect_address is not None:
                    address = await self._connect_address(host, port)
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, origin), address, port, **tls
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port} ({exc})") from None
        return connection

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def _close_oldest_idle(self) -> None:
        oldest = min(
            (waiting[0] for waiting in self._idle.values() if waiting),
            key=lambda c: c.idle_since,
        )
        self._idle[oldest.origin].remove(oldest)
        self._idle_count -= 1
        oldest.close()

    def _close_idle(self, gone: Callable[[_Connection], bool]) -> None:
        for origin, waiting in list(self._idle.items()):
            kept = []
            for connection in waiting:
                if gone(connection):
                    connection.close()
                else:
                    kept.append(connection)
            self._idle_count -= len(waiting) - len(kept)
            if kept:
                self._idle[origin] = kept
            else:
                del self._idle[origin]

    async def aclose(self) -> None:
        self._close_idle(lambda c: True)


async def _message(request: httpx.Request) -> bytes:
    """The request's bytes on the wire: its line, its headers, its body (checked first)."""
    url = request.url
    target = url.raw_path
    if _UNSAFE_TARGET.search(target):
        raise httpx.LocalProtocolError("the request target holds a control character or space")
    parts = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
    chunked = False
    for name, value in request.headers.raw:
        if _TOKEN.fullmatch(name) is None:
            raise httpx.LocalProtocolError(f"invalid header name {name[:40]!r}")
        if _UNSAFE_VALUE.search(value):
            raise httpx.LocalProtocolError(
                f"the value of header {name.decode('ascii')} holds CR, LF or NUL"
            )
        if name.lower() == b"transfer-encoding":
            chunked = value.lower() == b"chunked"
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    body = await _body(request)
    if chunked:
        parts += _chunked(body)
    elif body:
        parts.append(body)
    return b"".join(parts)


async def _body(request: httpx.Request) -> bytes:
    try:
        return request.content
    except httpx.RequestNotRead:
        return await request.aread()


def _chunked(body: bytes) -> Iterable[bytes]:
    if body:
        yield b"%x\r\n" % len(body)
        yield body
        yield b"\r\n"
    yield b"0\r\n\r\n"
