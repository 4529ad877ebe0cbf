"""Shared fixtures: settings on a temporary database, apps with an injected FHIR transport."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.logs import JsonFormatter
from cds_service.main import create_app
from cds_service.services.builtin import builtin_services

#: Variables meant for the tests themselves (e.g. CDS_TEST_POSTGRES_URL), kept from the shell.
TEST_ONLY_PREFIX = "CDS_TEST_"


def clean_cds_environment(environ: MutableMapping[str, str]) -> list[str]:
    """Remove every `CDS_*` setting a developer's shell exported (test-only variables stay), so
    that every test's Settings start from the defaults; returns the names removed."""
    inherited = sorted(
        name
        for name in environ
        if name.startswith("CDS_") and not name.startswith(TEST_ONLY_PREFIX)
    )
    for name in inherited:
        del environ[name]
    return inherited


clean_cds_environment(os.environ)
# The HTTP core, rules and scores are tested without authentication (so as a development
# deployment, which may fetch from any fhirServer); tests/security turns both on.
os.environ["CDS_AUTH"] = "disabled"
os.environ["CDS_ENV"] = "development"
# Each test's app would freeze the test process's heap at start-up (cds_service/heap.py), and
# cycles frozen there are never collected; tests/test_heap.py checks it in a process of its own.
os.environ["CDS_GC_THRESHOLD"] = "0"

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures"
CDS_FIXTURES = FIXTURES / "cds-hooks"
FROZEN_NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ADMIN_URL = os.environ.get("CDS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


SESSION_LOG_KEY = pytest.StashKey[Path]()
LOG_SCAN_TEST = "test_session_logs_hold_no_phi_or_tokens"
#: The directory where every process of the run (each pytest-xdist worker, and a later
#: `pytest tests/test_logs_clean.py` given the same directory) keeps its log lines.
LOG_DIR_VARIABLE = "CDS_TEST_LOG_DIR"


def session_log_directory(environ: MutableMapping[str, str]) -> Path:
    """The run's log directory: as given, or a new one, published in `environ` so that the
    pytest-xdist workers (started after the controller's configure) write beside it."""
    given = environ.get(LOG_DIR_VARIABLE)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        return directory
    directory = Path(tempfile.mkdtemp(prefix="cds-test-logs-"))
    environ[LOG_DIR_VARIABLE] = str(directory)
    return directory


def pytest_configure(config: pytest.Config) -> None:
    """Keep every log line of the run (as the service writes them) for the PHI scan."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    path = session_log_directory(os.environ) / f"{worker}-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    config.stash[SESSION_LOG_KEY] = path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The log scan runs last, over everything the other tests logged."""
    items.sort(key=lambda item: item.name == LOG_SCAN_TEST)


def load_fixture(relative: str) -> Any:
    """A JSON file from ../shared/fixtures (read-only; never edited)."""
    return json.loads((FIXTURES / relative).read_text())


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    name = f"cds_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


#: The stores' tables, dropped around each test that uses the session's PostgreSQL database.
STORE_TABLES = ("cds_feedback", "cds_audit", "cds_issued_cards", "cds_rule_simulations")


async def _drop_table(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for table in STORE_TABLES:
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
    finally:
        await conn.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL (as configured by CDS_DATABASE_URL) with none of the stores' tables yet."""
    if request.param == "sqlite":
        # A missing parent directory is created by the store.
        yield f"sqlite:///{tmp_path / 'data' / 'feedback.db'}"
        return
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_drop_table(url))
    try:
        yield url
    finally:
        asyncio.run(_drop_table(url))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path}/feedback.db")


@pytest.fixture
def fhir() -> FhirDouble:
    """The EHR's FHIR server: canned answers (`add`), an empty record otherwise, a request log.

    It holds no resources, so a search it understands finds nothing (an empty Bundle) and a read
    is 404; any other URL is 400 (see cds_service/fhir_double.py). Any base URL is accepted."""
    return FhirDouble([], base_url=None)


@pytest.fixture
def client(settings: Settings, fhir: FhirDouble) -> Iterator[TestClient]:
    # The HTTP core is tested against the built-in services (fixed behaviour); the rule
    # services have their own tests.
    app = create_app(
        settings,
        services=builtin_services(),
        fhir_transport=fhir.transport,
        clock=lambda: FROZEN_NOW,
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
