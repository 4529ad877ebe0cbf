"""The database both stores use: the configured URL, engines, schema creation, UTC timestamps.

`CDS_DATABASE_URL` names SQLite (the embedded default) or PostgreSQL (production). The feedback
store (`feedback/store.py`) and the audit trail (`audit/store.py`) keep their own tables in that
one database; both open it through `create_engine_for`, so they agree on WAL mode and the busy
timeout on SQLite and on the pool and round-trip check on PostgreSQL, create their tables the same
way, and store time alike (UTC, read back timezone-aware).

There are no migrations: a table only ever gains nullable columns and indexes, and opening a
store adds those its database lacks (`create_schema`), so a database an older version created
keeps its rows and serves the new version.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, DateTime, Dialect, MetaData, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from cds_service.exceptions import ConfigurationError

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "UTCDateTime",
    "async_database_url",
    "create_engine_for",
    "create_schema",
    "storable",
    "utc",
]

#: How long an SQLite writer waits for another worker's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: Attempts at creating the schema when several workers race to create it.
_SCHEMA_ATTEMPTS = 3


def utc(value: datetime) -> datetime:
    """`value` in UTC; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def storable(value: str | None, length: int) -> str | None:
    """`value` as a string column of `length` characters holds it on every backend: cut to
    fit, and each NUL (which PostgreSQL's text cannot hold, so the whole row would be refused)
    replaced by U+FFFD. For values a caller sent, which must never cost their row."""
    if value is None:
        return None
    return value[:length].replace("\x00", "\ufffd")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp that reads back aware (UTC) on every backend.

    SQLite has no timestamp type and SQLAlchemy stores it as text without an offset, so values are
    converted to UTC before writing and naive values read back are labelled UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else utc(value)


def async_database_url(database_url: str) -> URL:
    """Map the configured URL onto its async driver: aiosqlite or asyncpg.

    Raises ConfigurationError for anything else (the message never echoes a password).
    """
    scheme, sep, rest = database_url.partition("://")
    drivers = {
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
        "postgresql": "postgresql+asyncpg",
        "postgres": "postgresql+asyncpg",
        "postgresql+asyncpg": "postgresql+asyncpg",
    }
    if not sep or scheme not in drivers:
        raise ConfigurationError("the database URL must be sqlite:///path or postgresql://...")
    try:
        return make_url(f"{drivers[scheme]}://{rest}")
    except ArgumentError:
        raise ConfigurationError("the database URL is malformed") from None


def _is_memory_sqlite(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Several workers share the file: WAL lets readers and one writer proceed together, and the
    # busy timeout makes a writer wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL is durable against application crashes and never corrupts; it
        # skips the fsync per commit that FULL does (one per hook call, for the audit trail).
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


def create_engine_for(url: URL) -> AsyncEngine:
    """An engine for SQLite or PostgreSQL (whose connections are checked with a round trip
    before use, so a database restart costs no request)."""
    if url.get_backend_name() == "sqlite":
        if _is_memory_sqlite(url):
            # One shared connection, or every pooled connection would see its own empty database.
            engine = create_async_engine(url, poolclass=StaticPool)
        else:
            database = url.database
            assert database is not None
            if not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_async_engine(
                url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
            )
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    # Enough pooled connections for the calls one worker runs at once: connections beyond the
    # pool are opened and closed per use, which under load costs more than the write itself.
    return create_async_engine(url, pool_pre_ping=True, pool_size=16, max_overflow=16)


def _upgrade(conn: Connection, tables: MetaData) -> None:
    """Add the columns and indexes of `tables` that their existing tables lack."""
    inspector = inspect(conn)
    preparer = conn.dialect.identifier_preparer
    for table in tables.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:  # rows already there would have no value for it
                raise ConfigurationError(
                    f"table {table.name} lacks the NOT NULL column {column.name}: "
                    "only nullable columns are added to an existing table"
                )
            kind = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(table)} "
                f"ADD COLUMN {preparer.format_column(column)} {kind}"
            )
        indexes = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)


def _create_all(conn: Connection, tables: MetaData) -> None:
    tables.create_all(conn)
    _upgrade(conn, tables)


async def create_schema(engine: AsyncEngine, tables: MetaData) -> None:
    """Create the tables of `tables` that are missing (shared by every store on the database),
    and add to existing ones the nullable columns and the indexes defined since they were made.

    create_all checks, then creates; two workers starting together can both see no table (or no
    column) and one of them then fails with "already exists". Trying again sees it and does
    nothing.
    """
    for attempt in range(1, _SCHEMA_ATTEMPTS + 1):
        try:
            async with engine.begin() as conn:
                await conn.run_sync(_create_all, tables)
            return
        except DBAPIError:
            if attempt == _SCHEMA_ATTEMPTS:
                raise
            await asyncio.sleep(0.05 * attempt)
