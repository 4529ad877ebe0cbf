"""Audit fixtures: the shared `database_url`, with no audit table left over from another test."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest


async def _drop_audit_table(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DROP TABLE IF EXISTS cds_audit")
        await conn.execute("DROP TABLE IF EXISTS cds_issued_cards")
    finally:
        await conn.close()


@pytest.fixture
def audit_url(database_url: str) -> Iterator[str]:
    """`database_url` (SQLite or PostgreSQL) with none of the stores' tables yet."""
    if not database_url.startswith("postgres"):
        yield database_url
        return
    asyncio.run(_drop_audit_table(database_url))
    try:
        yield database_url
    finally:
        asyncio.run(_drop_audit_table(database_url))
