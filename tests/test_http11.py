"""The FHIR client's HTTP/1.1 transport, against servers on loopback that write their answers byte
by byte (each request they receive is read by h11, an independent parser, so what we send is
checked too), and against httpx's own transport on the same answers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gzip
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.http11 import HTTP11Transport
from cds_service.security.egress import EgressGuard, EgressRefused


@dataclass
class Received:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    reader: asyncio.StreamReader | None = None


@dataclass
class Peer:
    """What the server saw: connections opened and closed, and each request read."""

    opened: int = 0
    closed: int = 0
    requests: list[Received] = field(default_factory=list)


# An answer: given the request, its number on this connection and the stream, write anything;
# return False to close the connection afterwards.
Answer = Callable[[Received, int, asyncio.StreamWriter], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader, pending: bytearray) -> Received | None:
    parser = h11.Connection(h11.SERVER)
    if pending:  # (an empty receive_data tells h11 the connection ended)
        parser.receive_data(bytes(pending))
        pending.clear()
    request: h11.Request | None = None
    body = b""
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(65536)
            if not data and request is None:
                return None
            parser.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            pending += parser.trailing_data[0]
            return Received(request.method, request.target, list(request.headers), body, reader)
        elif isinstance(event, h11.ConnectionClosed):
            return None


@contextlib.asynccontextmanager
async def serving(
    answer: Answer, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, Peer]]:
    peer = Peer()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.opened += 1
        pending = bytearray()
        try:
            for number in range(1000):
                request = await _read_request(reader, pending)
                if request is None:
                    break
                peer.requests.append(request)
                if not await answer(request, number, writer):
                    break
                await writer.drain()
        except (ConnectionError, h11.RemoteProtocolError):
            pass
        finally:
            peer.closed += 1
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0, ssl=ssl_context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, peer
    finally:
        server.close()
        await server.wait_closed()


def answering(*raw: bytes, keep: bool = True) -> Answer:
    """Write these bytes (as separate writes) to every request."""

    async def answer(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        for part in raw:
            writer.write(part)
            await writer.drain()
        return keep

    return answer


def ok(body: bytes, *headers: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n"
        % (
            len(body),
            b"".join(h + b"\r\n" for h in headers),
        )
        + body
    )


async def until(condition: Callable[[], bool], seconds: float = 2.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def client(transport: httpx.AsyncBaseTransport, **timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, **timeouts))


# Every test runs on asyncio's own loop and on uvloop, which `cds-service serve` runs on (their
# transports differ: uvloop's are not asyncio.Transport subclasses).
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
_loop_factory: list[Callable[[], asyncio.AbstractEventLoop]] = []


@pytest.fixture(autouse=True, params=sorted(LOOPS))
def event_loop_kind(request: pytest.FixtureRequest) -> Iterator[str]:
    _loop_factory.append(LOOPS[request.param])
    yield request.param
    _loop_factory.pop()


def run(coroutine: Awaitable[Any]) -> Any:
    with asyncio.Runner(loop_factory=_loop_factory[-1]) as runner:
        return runner.run(asyncio.wait_for(coroutine, 20))


def test_an_answer_by_length_and_the_kept_alive_connection_serves_the_next() -> None:
    async def scenario() -> None:
        async with serving(answering(ok(b'{"a":1}', b"Content-Type: application/json"))) as (
            port,
            peer,
        ):
            async with client(HTTP11Transport()) as http:
                first = await http.get(f"http://127.0.0.1:{port}/fhir/Patient/1?x=%20y")
                second = await http.post(f"http://127.0.0.1:{port}/fhir", content=b"[1,2]")
            assert (first.status_code, first.json(), first.reason_phrase) == (200, {"a": 1}, "OK")
            assert first.headers["content-type"] == "application/json"
            assert first.http_version == "HTTP/1.1"
            assert second.content == b'{"a":1}'
            assert peer.opened == 1  # one connection for both
            assert [(r.method, r.target, r.body) for r in peer.requests] == [
                (b"GET", b"/fhir/Patient/1?x=%20y", b""),
                (b"POST", b"/fhir", b"[1,2]"),
            ]
            assert (b"host", b"127.0.0.1:%d" % port) in peer.requests[0].headers

    run(scenario())


@pytest.mark.parametrize("size", [0, 1, 70_000, 3_000_000])
def test_a_chunked_answer_of_any_size_arrives_whole(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    chunks = [body[i : i + 50_000] for i in range(0, len(body), 50_000)]
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"%x\r\n%s\r\n" % (len(c), c) for c in chunks
    )

    async def scenario() -> None:
        async with (
            serving(answering(raw, b"0\r\n\r\n")) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            for _ in range(2):
                assert (await http.get(f"http://127.0.0.1:{port}/")).content == body
            assert peer.opened == 1

    run(scenario())


def test_an_answer_ending_with_the_connection() -> None:
    async def scenario() -> None:
        async with serving(answering(b"HTTP/1.1 200 OK\r\n\r\nall ", b"of it", keep=False)) as (
            port,
            peer,
        ):
            async with client(HTTP11Transport()) as http:
                first = await http.get(f"http://127.0.0.1:{port}/")
                second = await http.get(f"http://127.0.0.1:{port}/")
            assert first.content == second.content == b"all of it"
            assert peer.opened == 2

    run(scenario())


def test_connection_close_is_honoured() -> None:
    async def scenario() -> None:
        async with (
            serving(answering(ok(b"{}", b"Connection: close"))) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            for _ in range(3):
                assert (await http.get(f"http://127.0.0.1:{port}/")).json() == {}
            assert peer.opened == 3

    run(scenario())


def test_httpx_decodes_a_gzipped_answer() -> None:
    packed = gzip.compress(b'{"resourceType":"Bundle"}')

    async def scenario() -> None:
        async with (
            serving(answering(ok(packed, b"Content-Encoding: gzip"))) as (port, _),
            client(HTTP11Transport()) as http,
        ):
            answer = await http.get(f"http://127.0.0.1:{port}/")
            assert answer.json() == {"resourceType": "Bundle"}

    run(scenario())


def test_a_body_its_encoding_does_not_decode_is_a_decoding_error() -> None:
    async def answer(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        if request.target == b"/bad":
            writer.write(ok(b"not gzip", b"Content-Encoding: gzip"))
        else:
            writer.write(ok(b"{}"))
        return True

    async def scenario() -> None:
        async with (
            serving(answer) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            with pytest.raises(httpx.DecodingError):
                await http.get(f"http://127.0.0.1:{port}/bad")
            assert (await http.get(f"http://127.0.0.1:{port}/")).json() == {}
            assert peer.opened == 2  # that connection was not kept

    run(scenario())


def test_a_server_closing_mid_body_is_a_read_error_not_a_hang() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"

    async def scenario() -> None:
        async with (
            serving(answering(raw, keep=False)) as (port, _),
            client(HTTP11Transport()) as http,
        ):
            with pytest.raises(httpx.ReadError):
                await http.get(f"http://127.0.0.1:{port}/")

    run(scenario())


def test_a_new_connection_closed_without_an_answer_is_a_protocol_error() -> None:
    async def scenario() -> None:
        async with (
            serving(answering(keep=False)) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
                await http.get(f"http://127.0.0.1:{port}/")
            assert len(peer.requests) == 1  # not retried: the connection was new

    run(scenario())


def _closes_the_second_request_unanswered() -> Answer:
    """Answers the first request on each connection; closes at the second without a byte (a
    server ending an idle connection just as the client reuses it)."""

    async def answer(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        if number == 0:
            writer.write(ok(b"{}"))
            return True
        return False

    return answer


def test_a_reused_connection_closed_unanswered_is_retried_once_for_a_get_only() -> None:
    async def scenario() -> None:
        async with (
            serving(_closes_the_second_request_unanswered()) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            await http.get(f"http://127.0.0.1:{port}/")
            assert (await http.get(f"http://127.0.0.1:{port}/again")).json() == {}
            assert [r.target for r in peer.requests] == [b"/", b"/again", b"/again"]
            assert peer.opened == 2
            with pytest.raises(httpx.RemoteProtocolError, match="kept-alive"):
                await http.post(f"http://127.0.0.1:{port}/fhir", content=b"{}")
            assert [r.method for r in peer.requests].count(b"POST") == 1  # never sent twice

    run(scenario())


def test_a_connection_its_server_closed_while_idle_is_not_reused() -> None:
    async def answer(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(b"{}"))
        return False  # the server closes after each answer, without saying so

    async def scenario() -> None:
        async with (
            serving(answer) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            await http.post(f"http://127.0.0.1:{port}/", content=b"1")
            await until(lambda: peer.closed == 1)
            await asyncio.sleep(0.05)  # the client's loop sees the end of the connection
            await http.post(f"http://127.0.0.1:{port}/", content=b"2")
            assert [r.body for r in peer.requests] == [b"1", b"2"]  # the POST was not lost

    run(scenario())


def test_idle_connections_expire() -> None:
    async def scenario() -> None:
        async with serving(answering(ok(b"{}"))) as (port, peer):
            limits = httpx.Limits(max_connections=4, keepalive_expiry=0.05)
            async with client(HTTP11Transport(limits=limits)) as http:
                await http.get(f"http://127.0.0.1:{port}/")
                await http.get(f"http://127.0.0.1:{port}/")
                assert peer.opened == 1
                await asyncio.sleep(0.1)
                await http.get(f"http://127.0.0.1:{port}/")
                assert peer.opened == 2
                await until(lambda: peer.closed == 1)  # the expired one was closed, not leaked

    run(scenario())


def test_read_timeout_is_silence_not_duration() -> None:
    async def drip(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
        for byte in b"12345678":
            await asyncio.sleep(0.06)
            writer.write(bytes([byte]))
            await writer.drain()
        return True

    async def stall(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n1234")
        await asyncio.sleep(5)
        return False

    async def scenario() -> None:
        async with serving(drip) as (port, _), client(HTTP11Transport(), read=0.25) as http:
            # 0.5 s in all, never silent for 0.25 s
            assert (await http.get(f"http://127.0.0.1:{port}/")).content == b"12345678"
        async with (
            serving(stall) as (port, _),
            client(HTTP11Transport(), read=0.25) as http,
        ):
            started = asyncio.get_running_loop().time()
            with pytest.raises(httpx.ReadTimeout):
                await http.get(f"http://127.0.0.1:{port}/")
            assert 0.2 < asyncio.get_running_loop().time() - started < 1.5

    run(scenario())


def test_requests_beyond_the_pool_wait_for_a_connection_then_time_out() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def held(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
            await gate.wait()
            writer.write(ok(b"{}"))
            return True

        async with serving(held) as (port, peer):
            limits = httpx.Limits(max_connections=1)
            async with client(HTTP11Transport(limits=limits), pool=0.2) as http:
                first = asyncio.ensure_future(http.get(f"http://127.0.0.1:{port}/1"))
                await until(lambda: len(peer.requests) == 1)
                with pytest.raises(httpx.PoolTimeout):
                    await http.get(f"http://127.0.0.1:{port}/2")
                waiting = asyncio.ensure_future(http.get(f"http://127.0.0.1:{port}/3"))
                await asyncio.sleep(0.05)
                gate.set()
                assert (await first).status_code == (await waiting).status_code == 200
            assert peer.opened == 1
            assert [r.target for r in peer.requests] == [b"/1", b"/3"]

    run(scenario())


def test_opening_beyond_the_limit_closes_the_oldest_idle_connection() -> None:
    async def scenario() -> None:
        async with (
            serving(answering(ok(b"a"))) as (port_a, peer_a),
            serving(answering(ok(b"b"))) as (port_b, peer_b),
        ):
            # idle ones alone could stay: the open ones are what is bounded
            limits = httpx.Limits(max_connections=1, max_keepalive_connections=5)
            async with client(HTTP11Transport(limits=limits)) as http:
                assert (await http.get(f"http://127.0.0.1:{port_a}/")).content == b"a"
                assert (await http.get(f"http://127.0.0.1:{port_b}/")).content == b"b"
                await until(lambda: peer_a.closed == 1)
                assert peer_b.closed == 0

    run(scenario())


def test_connections_opened_at_once_stay_within_the_limit() -> None:
    async def scenario() -> None:
        arrived: list[bytes] = []

        async def together(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
            arrived.append(request.target)
            await until(lambda: len(arrived) >= 2)  # both requests in flight at once
            writer.write(ok(b"{}"))
            return True

        async with (
            serving(answering(ok(b"a"))) as (port_a, peer_a),
            serving(together) as (port_b, peer_b),
        ):
            limits = httpx.Limits(max_connections=2, max_keepalive_connections=5)
            async with client(HTTP11Transport(limits=limits)) as http:
                await asyncio.gather(
                    *(http.get(f"http://127.0.0.1:{port_a}/{i}") for i in range(2))
                )
                assert peer_a.opened == 2  # both now idle
                await asyncio.gather(
                    *(http.get(f"http://127.0.0.1:{port_b}/{i}") for i in range(2))
                )
                assert peer_b.opened == 2
                await until(lambda: peer_a.closed == 2)  # made room for both, not one

    run(scenario())


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer abc\r\nX-Injected: 1"},
        {"Authorization": "Bearer abc\nX-Injected: 1"},
        {"X-Note": "nul\x00byte"},
        {"Bad Name": "x"},
        {"Bad:Name": "x"},
    ],
)
def test_a_header_that_would_change_the_request_never_leaves(headers: dict[str, str]) -> None:
    async def scenario() -> None:
        async with (
            serving(answering(ok(b"{}"))) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            with pytest.raises(httpx.LocalProtocolError):
                await http.get(f"http://127.0.0.1:{port}/", headers=headers)
            await asyncio.sleep(0.05)
            assert peer.opened == 0  # nothing was sent

    run(scenario())


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    ],
)
def test_a_malformed_answer_is_a_protocol_error(raw: bytes) -> None:
    async def scenario() -> None:
        async with (
            serving(answering(raw)) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get(f"http://127.0.0.1:{port}/")
            await until(lambda: peer.closed == 1)  # and its connection was dropped

    run(scenario())


def test_a_second_answer_to_one_request_is_not_taken_for_the_next() -> None:
    async def scenario() -> None:
        async with (
            serving(answering(ok(b"first") + ok(b"unasked"))) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            assert (await http.get(f"http://127.0.0.1:{port}/")).content == b"first"
            assert (await http.get(f"http://127.0.0.1:{port}/")).content == b"first"
            assert peer.opened == 2

    run(scenario())


def test_bytes_sent_to_an_idle_connection_retire_it() -> None:
    async def answer(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok(b"{}"))
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"garbage")
        return True

    async def scenario() -> None:
        async with (
            serving(answer) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            await http.get(f"http://127.0.0.1:{port}/")
            await asyncio.sleep(0.1)
            await http.get(f"http://127.0.0.1:{port}/")
            assert peer.opened == 2

    run(scenario())


def test_interim_answers_are_skipped_and_head_has_no_body() -> None:
    async def answer(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        if request.method == b"HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"hello"))
        return True

    async def scenario() -> None:
        async with serving(answer) as (port, _), client(HTTP11Transport()) as http:
            got = await http.get(f"http://127.0.0.1:{port}/")
            assert (got.status_code, got.content, "link" in got.headers) == (
                200,
                b"hello",
                False,
            )
            head = await http.head(f"http://127.0.0.1:{port}/")
            assert (head.status_code, head.content, head.headers["content-length"]) == (
                200,
                b"",
                "5",
            )
            assert (await http.get(f"http://127.0.0.1:{port}/")).content == b"hello"

    run(scenario())


def test_a_cancelled_request_closes_its_connection() -> None:
    dropped = []

    async def slow(request: Received, number: int, writer: asyncio.StreamWriter) -> bool:
        if request.target == b"/slow":
            assert request.reader is not None
            await until(request.reader.at_eof, 5)  # the client dropped the connection
            dropped.append(request.target)
            return False
        writer.write(ok(b"{}"))
        return True

    async def scenario() -> None:
        async with (
            serving(slow) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await http.get(f"http://127.0.0.1:{port}/slow")
            await until(lambda: dropped == [b"/slow"])
            assert (await http.get(f"http://127.0.0.1:{port}/fast")).json() == {}
            assert peer.opened == 2

    run(scenario())


def test_a_streamed_request_body_is_sent_chunked() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b'{"resourceType":'
        yield b'"Bundle"}'

    async def scenario() -> None:
        async with (
            serving(answering(ok(b"{}"))) as (port, peer),
            client(HTTP11Transport()) as http,
        ):
            await http.post(f"http://127.0.0.1:{port}/", content=parts())
            await http.post(f"http://127.0.0.1:{port}/", content=b"")
            assert [r.body for r in peer.requests] == [b'{"resourceType":"Bundle"}', b""]

    run(scenario())


def test_connection_failures_are_httpx_errors() -> None:
    async def scenario() -> None:
        async with serving(answering(ok(b"{}"))) as (port, _):
            pass  # the port is closed again
        async with client(HTTP11Transport()) as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/")
            with pytest.raises(httpx.UnsupportedProtocol):
                await http.get("ftp://127.0.0.1/")

    run(scenario())


def test_a_server_that_never_accepts_is_a_connect_timeout() -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(0)  # never accepted: once its queue is full, SYNs go unanswered
        port = listening.getsockname()[1]
        waiting = []
        try:
            for _ in range(64):
                probe = socket.socket()
                waiting.append(probe)
                probe.settimeout(0.2)
                try:
                    probe.connect(("127.0.0.1", port))
                except TimeoutError:
                    break
            else:
                pytest.fail("the listen queue never filled")

            async def scenario() -> None:
                async with client(HTTP11Transport(), connect=0.2) as http:
                    with pytest.raises(httpx.ConnectTimeout):
                        await http.get(f"http://127.0.0.1:{port}/")

            run(scenario())
        finally:
            for probe in waiting:
                probe.close()


def test_each_connection_goes_where_the_egress_guard_checked() -> None:
    """As the service runs it: the URL keeps the name, the guard picks (and checks) the address
    once per connection, and a refused address is never connected to."""
    asked: list[str] = []
    refusals: list[str] = []
    table = {"ehr.test": ["127.0.0.1"], "twin.test": ["127.0.0.1"], "meta.test": ["169.254.1.9"]}

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return table[host]

    guard = EgressGuard(resolver=resolve, on_refusal=refusals.append)

    async def scenario() -> None:
        async with (
            serving(answering(ok(b"{}"))) as (port, peer),
            client(HTTP11Transport(connect_address=guard.address)) as http,
        ):
            for path in ("/a", "/b"):
                assert (await http.get(f"http://ehr.test:{port}{path}")).json() == {}
            assert (await http.get(f"http://twin.test:{port}/c")).json() == {}
            for refused in (f"http://meta.test:{port}/", "http://169.254.169.254/latest"):
                with pytest.raises(EgressRefused):
                    await http.get(refused)
            assert peer.opened == 2  # one per name, though both names share the address
            assert [dict(r.headers)[b"host"] for r in peer.requests] == [
                b"ehr.test:%d" % port,
                b"ehr.test:%d" % port,
                b"twin.test:%d" % port,
            ]
        assert asked == ["ehr.test", "twin.test", "meta.test"]  # once per connection opened
        assert refusals == ["link-local address", "cloud metadata address"]

    run(scenario())


def _certificates(directory: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `name` and a client context trusting only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "cert.pem"
    key_file = directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    return server, trusting


def test_tls_checks_the_certificate_of_the_pinned_name(tmp_path: Path) -> None:
    server_tls, client_tls = _certificates(tmp_path, "ehr.test")
    assert ipaddress.ip_address("127.0.0.1")

    async def scenario() -> None:
        async with (
            serving(answering(ok(b'{"tls":true}')), server_tls) as (port, peer),
            client(HTTP11Transport(ssl_context=client_tls)) as http,
        ):
            # as security/egress.py sends it: the address in the URL, the name for TLS
            pinned = await http.get(
                f"https://127.0.0.1:{port}/",
                headers={"Host": f"ehr.test:{port}"},
                extensions={"sni_hostname": "ehr.test"},
            )
            assert pinned.json() == {"tls": True}
            again = await http.get(
                f"https://127.0.0.1:{port}/", extensions={"sni_hostname": "ehr.test"}
            )
            assert again.status_code == 200
            assert peer.opened == 1
            with pytest.raises(httpx.ConnectError):  # the certificate is not for 127.0.0.1
                await http.get(f"https://127.0.0.1:{port}/")
            async with client(HTTP11Transport()) as http:  # the public roots do not know it
                with pytest.raises(httpx.ConnectError):
                    await http.get(
                        f"https://127.0.0.1:{port}/", extensions={"sni_hostname": "ehr.test"}
                    )

    run(scenario())


# The same answers through this transport and httpx's own, split into arbitrary writes.

_FRAMINGS = ("length", "chunked", "close")


def _framed(status: int, body: bytes, framing: str, chunk: int) -> tuple[bytes, bool]:
    head = b"HTTP/1.1 %d Whatever\r\nX-Trace: t\r\n" % status
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body, True
    if framing == "chunked":
        pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n", True
    return head + b"Connection: close\r\n\r\n" + body, False


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=st.sampled_from([200, 201, 400, 404, 410, 500]),
    body=st.binary(max_size=3000),
    framing=st.sampled_from(_FRAMINGS),
    chunk=st.integers(1, 700),
    cuts=st.lists(st.integers(1, 400), max_size=12),
)
def test_answers_read_as_httpx_reads_them(
    status: int, body: bytes, framing: str, chunk: int, cuts: list[int]
) -> None:
    raw, keep = _framed(status, body, framing, chunk)
    parts, rest = [], raw
    for cut in cuts:
        parts.append(rest[:cut])
        rest = rest[cut:]
    parts.append(rest)

    async def read_with(transport: httpx.AsyncBaseTransport) -> tuple[int, bytes, str | None]:
        async with (
            serving(answering(*[p for p in parts if p], keep=keep)) as (port, _),
            client(transport) as http,
        ):
            answers = [await http.get(f"http://127.0.0.1:{port}/") for _ in range(2)]
        assert answers[0].content == answers[1].content
        return answers[0].status_code, answers[0].content, answers[0].headers.get("x-trace")

    async def scenario() -> None:
        ours = await read_with(HTTP11Transport())
        theirs = await read_with(httpx.AsyncHTTPTransport())
        assert ours == theirs == (status, body, "t")

    run(scenario())
