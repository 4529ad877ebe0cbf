"""Population simulations stored per rule version: ``cds_rule_simulations``.

`cds-service rules simulate ... --record` (and the workbench's "simulate this version" button)
store, for each rule of the report, the rule's row (calls, fired, statuses, fire rate) and the
card rate of its service on its hook in that run, under the rule's id and version. The rule page
shows the latest simulation of the version being served beside the older versions' ones, so a
committee compares a rule change's population effect with the version before it.

Example patient ids are stored (they are the author's review list) and shown to authors only.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from cds_service.clock import system_clock
from cds_service.database import UTCDateTime, async_database_url, create_engine_for, create_schema
from cds_service.population.report import SimulationReport

__all__ = ["SimulationStore", "StoredSimulation", "record_report", "rows_for"]

metadata = MetaData()

simulations_table = Table(
    "cds_rule_simulations",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", UTCDateTime(), nullable=False),
    Column("rule_id", String(256), nullable=False),
    Column("rule_version", String(64), nullable=False),
    Column("service", String(256), nullable=False),
    Column("hook", String(256), nullable=False),
    Column("source", String(1024), nullable=False),
    Column("patients", Integer(), nullable=False),
    Column("calls", Integer(), nullable=False),
    Column("fired", Integer(), nullable=False),
    Column("fire_rate", Float(), nullable=False),
    Column("card_rate", Float(), nullable=False),
    Column("statuses", Text(), nullable=False),
    Column("examples", Text(), nullable=False),
    Column("errors", Text(), nullable=False),
    Index("ix_cds_rule_simulations_rule", "rule_id", "at"),
)


@dataclass(frozen=True, slots=True)
class StoredSimulation:
    """One rule's result in one simulation run."""

    at: datetime
    rule_id: str
    rule_version: str
    service: str
    hook: str
    source: str
    patients: int
    calls: int
    fired: int
    fire_rate: float
    card_rate: float
    statuses: dict[str, int]
    examples: list[str]
    errors: list[str]

    def to_json(self, *, examples: bool) -> dict[str, Any]:
        """JSON for the API; `examples` (patient ids) only for a role allowed to see them."""
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "rule": self.rule_id,
            "version": self.rule_version,
            "service": self.service,
            "hook": self.hook,
            "source": self.source,
            "patients": self.patients,
            "calls": self.calls,
            "fired": self.fired,
            "fireRate": self.fire_rate,
            "cardRate": self.card_rate,
            "statuses": self.statuses,
            "examplePatients": self.examples if examples else [],
            "errors": self.errors,
        }


def rows_for(
    report: SimulationReport, versions: dict[str, str], *, source: str, at: datetime
) -> list[StoredSimulation]:
    """The report's rules that have a version in `versions` (the rules of the simulated
    directory; built-in services' rows are not rules and are left out)."""
    rates = {(s.service, s.hook): s.card_rate for s in report.services}
    rows = []
    for rule in report.rules:
        if rule.rule not in versions:
            continue
        rows.append(
            StoredSimulation(
                at=at,
                rule_id=rule.rule,
                rule_version=versions[rule.rule],
                service=rule.service,
                hook=rule.hook,
                source=source[:1024],
                patients=report.patients,
                calls=rule.calls,
                fired=rule.fired,
                fire_rate=rule.fire_rate,
                card_rate=rates.get((rule.service, rule.hook), 0.0),
                statuses=dict(rule.statuses),
                examples=list(rule.example_patients),
                errors=list(rule.errors),
            )
        )
    return rows


class SimulationStore:
    """Simulation rows in SQLite or PostgreSQL. Open with `await SimulationStore.open(url)`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @classmethod
    async def open(cls, database_url: str) -> SimulationStore:
        engine = create_engine_for(async_database_url(database_url))
        try:
            await create_schema(engine, metadata)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def add(self, rows: list[StoredSimulation]) -> None:
        if not rows:
            return
        values = [
            {
                "at": r.at,
                "rule_id": r.rule_id[:256],
                "rule_version": r.rule_version[:64],
                "service": r.service[:256],
                "hook": r.hook[:256],
                "source": r.source[:1024],
                "patients": r.patients,
                "calls": r.calls,
                "fired": r.fired,
                "fire_rate": r.fire_rate,
                "card_rate": r.card_rate,
                "statuses": json.dumps(r.statuses, sort_keys=True),
                "examples": json.dumps(r.examples),
                "errors": json.dumps(r.errors),
            }
            for r in rows
        ]
        async with self._engine.begin() as conn:
            await conn.execute(insert(simulations_table), values)

    async def for_rule(self, rule_id: str, limit: int = 20) -> list[StoredSimulation]:
        """The rule's simulations, newest first (every version)."""
        t = simulations_table
        stmt = select(t).where(t.c.rule_id == rule_id).order_by(t.c.at.desc(), t.c.id.desc())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt.limit(limit))).mappings().all()
        return [_stored(row) for row in rows]

    async def latest(self) -> dict[tuple[str, str], StoredSimulation]:
        """The newest simulation of every rule version, by (rule id, version)."""
        t = simulations_table
        stmt = select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(10_000)
        found: dict[tuple[str, str], StoredSimulation] = {}
        async with self._engine.connect() as conn:
            for row in (await conn.execute(stmt)).mappings():
                found.setdefault((row["rule_id"], row["rule_version"]), _stored(row))
        return found


def _stored(row: Any) -> StoredSimulation:
    return StoredSimulation(
        at=row["at"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        service=row["service"],
        hook=row["hook"],
        source=row["source"],
        patients=row["patients"],
        calls=row["calls"],
        fired=row["fired"],
        fire_rate=row["fire_rate"],
        card_rate=row["card_rate"],
        statuses=json.loads(row["statuses"]),
        examples=json.loads(row["examples"]),
        errors=json.loads(row["errors"]),
    )


def record_report(report: SimulationReport, rules_dir: Path | None, source: str) -> str | None:
    """`rules simulate --record`: the report's rules stored under the versions of `rules_dir`
    (default: the bundled rules) in `CDS_DATABASE_URL`; a problem's message, or None."""
    from cds_service.config import default_rules_dir, load_settings
    from cds_service.exceptions import ConfigurationError
    from cds_service.rules.ruleset import load_ruleset
    from cds_service.rules.runtime import known_score_names

    ruleset = load_ruleset(rules_dir or default_rules_dir(), known_score_names())
    versions = {rule_id: str(r.rule.version) for rule_id, r in ruleset.rules.items()}
    rows = rows_for(report, versions, source=source, at=system_clock())

    async def store() -> None:
        simulations = await SimulationStore.open(load_settings().database_url)
        try:
            await simulations.add(rows)
        finally:
            await simulations.close()

    try:
        asyncio.run(store())
    except (ConfigurationError, OSError) as exc:
        return str(exc)
    except Exception as exc:  # the database refused: say which, never a traceback
        return f"the database refused the rows ({type(exc).__name__})"
    print(f"recorded {len(rows)} rule results", file=sys.stderr)
    return None
