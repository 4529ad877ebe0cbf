"""`cds_service.database`: a store opened on a database created by an older version gains the
columns and indexes added since (nullable, so the rows already there stay valid)."""

from __future__ import annotations

import asyncio

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, inspect, text
from sqlalchemy.schema import SchemaItem

from cds_service.database import async_database_url, create_engine_for, create_schema


def _tables(*, newer: bool) -> MetaData:
    metadata = MetaData()
    items: list[SchemaItem] = [
        Column("id", Integer(), primary_key=True),
        Column("name", String(16)),
    ]
    if newer:
        items += [
            Column("added", String(32), nullable=True),
            Index("ix_upgrade_test_added", "added"),
        ]
    Table("upgrade_test", metadata, *items)
    return metadata


def test_create_schema_adds_missing_columns_and_indexes(database_url: str) -> None:
    async def body() -> tuple[set[str], set[str], list[tuple[object, ...]]]:
        engine = create_engine_for(async_database_url(database_url))
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DROP TABLE IF EXISTS upgrade_test"))
            await create_schema(engine, _tables(newer=False))
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO upgrade_test (id, name) VALUES (1, 'old')"))
            await create_schema(engine, _tables(newer=True))
            await create_schema(engine, _tables(newer=True))  # a second start changes nothing
            async with engine.begin() as conn:
                columns = await conn.run_sync(
                    lambda c: {col["name"] for col in inspect(c).get_columns("upgrade_test")}
                )
                indexes = await conn.run_sync(
                    lambda c: {ix["name"] for ix in inspect(c).get_indexes("upgrade_test")}
                )
                rows = (await conn.execute(text("SELECT id, name, added FROM upgrade_test"))).all()
                await conn.execute(text("DROP TABLE upgrade_test"))
            return columns, {str(i) for i in indexes}, [tuple(r) for r in rows]
        finally:
            await engine.dispose()

    columns, indexes, rows = asyncio.run(body())
    assert columns == {"id", "name", "added"}
    assert "ix_upgrade_test_added" in indexes
    assert rows == [(1, "old", None)]
