"""What an audit write costs on the wire to PostgreSQL: one round trip, cards or not.

Every hook call waits for its audit row before its answer leaves, so each round trip is a wait
(and a wake of the process) on every call. The store's connections go through a TCP relay that
reads the frontend protocol and counts what makes the server answer "ready for query": a Sync
(the end of an extended-protocol exchange) or a simple Query.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from cds_service.audit import AuditEntry, AuditStore
from tests.audit.test_issued import card
from tests.audit.test_store import T0, entry

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("database_url", ["postgres"], indirect=True),
]

SSL_OR_GSS_REQUESTS = {80877103, 80877104}  # answered with one byte, then the startup message
SERVICE = "preventive-care"  # the service of `card`'s cards


class ReadyCounter:
    """Counts, on one connection, the frontend messages after which the server reports it is
    ready again."""

    def __init__(self) -> None:
        self.round_trips = 0
        self._buffer = b""
        self._started = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if not self._started:  # untyped: Int32 length, Int32 code, ...
                if len(self._buffer) < 8:
                    return
                length, code = struct.unpack("!II", self._buffer[:8])
                if len(self._buffer) < length:
                    return
                self._buffer = self._buffer[length:]
                self._started = code not in SSL_OR_GSS_REQUESTS
                continue
            if len(self._buffer) < 5:
                return
            kind, length = self._buffer[:1], struct.unpack("!I", self._buffer[1:5])[0]
            if len(self._buffer) < 1 + length:
                return
            self._buffer = self._buffer[1 + length :]
            if kind in (b"S", b"Q"):
                self.round_trips += 1


class Relay:
    """A loopback TCP relay to PostgreSQL that counts round trips over all its connections."""

    def __init__(self) -> None:
        self.connections: list[ReadyCounter] = []

    @property
    def round_trips(self) -> int:
        return sum(c.round_trips for c in self.connections)


@contextlib.asynccontextmanager
async def relayed(url: str) -> AsyncIterator[tuple[str, Relay]]:
    """`url` through a loopback relay, and the relay."""
    target = make_url(url)
    relay = Relay()

    async def pipe(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counter: ReadyCounter | None
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if counter is not None:
                    counter.feed(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def connection(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(target.host, target.port or 5432)
        counter = ReadyCounter()
        relay.connections.append(counter)
        await asyncio.gather(pipe(client_r, server_w, counter), pipe(server_r, client_w, None))

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield target.set(host="127.0.0.1", port=port).render_as_string(False), relay
    finally:
        server.close()


def test_a_write_takes_one_round_trip_with_its_cards_or_without(audit_url: str) -> None:
    """No BEGIN and COMMIT around a row and its cards, and no reset of the pooled connection after
    each write: one round trip each, once the statement is prepared."""

    async def body() -> tuple[list[int], list[AuditEntry], int]:
        async with relayed(audit_url) as (url, relay):
            store = await AuditStore.open(url)
            try:
                await store.record(entry(cards=1), [card("warm-up")])  # the statement is prepared
                trips = []
                for issued in ([card("a"), card("b")], [], [card("c")]):
                    before = relay.round_trips
                    await store.record(entry(cards=len(issued)), issued)
                    trips.append(relay.round_trips - before)
                rows = await store.query(since=T0)
                found = await store.issued_cards(
                    ["a", "b", "c"], service=SERVICE, tenant="hospital-a"
                )
                return trips, rows, len(found)
            finally:
                await store.close()

    trips, rows, cards_found = asyncio.run(body())
    assert trips == [1, 1, 1]
    assert [r.cards for r in rows] == [1, 0, 2, 1]  # newest first
    assert cards_found == 3


def test_a_row_whose_card_is_refused_is_not_written_either(audit_url: str) -> None:
    """One statement writes the rows and their cards: when PostgreSQL refuses a card (here a
    missing service, NOT NULL), the rows of the same write are not kept without it."""

    async def body() -> tuple[BaseException | None, int, int]:
        store = await AuditStore.open(audit_url)
        try:
            raised: BaseException | None = None
            try:
                await store.record(entry(), [card("kept?"), card("refused", service=None)])
            except asyncpg.PostgresError as exc:
                raised = exc
            rows = await store.query(since=T0)
            found = await store.issued_cards(["kept?"], service=SERVICE, tenant="hospital-a")
            await store.record(entry(), [card("after")])  # the store goes on writing
            return raised, len(rows), len(found) + len(await store.query(since=T0))
        finally:
            await store.close()

    raised, rows_after_refusal, written_after = asyncio.run(body())
    assert isinstance(raised, asyncpg.NotNullViolationError)
    assert rows_after_refusal == 0
    assert written_after == 1


def test_a_batch_keeps_the_order_its_rows_were_recorded_in(audit_url: str) -> None:
    """Rows recorded together, with equal times, come back newest insert first: the ids follow
    the order of the arrays, cards or not."""

    async def body() -> list[int]:
        store = await AuditStore.open(audit_url)
        try:
            await asyncio.gather(
                *(
                    store.record(entry(cards=n), [card(f"c{n}")] if n % 3 == 0 else [])
                    for n in range(60)
                )
            )
            return [r.cards for r in await store.query(since=T0, limit=100)]
        finally:
            await store.close()

    assert asyncio.run(body()) == list(range(59, -1, -1))
