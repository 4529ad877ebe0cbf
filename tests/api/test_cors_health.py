"""CORS allow-list, health and readiness."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings, load_settings
from cds_service.exceptions import ConfigurationError
from cds_service.main import create_app

EHR = "https://ehr.hospital-a.example.org"


def make(tmp_path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(database_url=f"sqlite:///{tmp_path}/f.db", **settings)))  # type: ignore[arg-type]


def test_no_cors_by_default(tmp_path: Path) -> None:
    with make(tmp_path) as client:
        response = client.get("/cds-services", headers={"Origin": EHR})
    assert "access-control-allow-origin" not in response.headers


def test_allowed_origin(tmp_path: Path) -> None:
    with make(tmp_path, cors_origins=[EHR]) as client:
        ok = client.get("/cds-services", headers={"Origin": EHR})
        other = client.get("/cds-services", headers={"Origin": "https://evil.example.net"})
        preflight = client.options(
            "/cds-services/duplicate-therapy",
            headers={
                "Origin": EHR,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
    assert ok.headers["access-control-allow-origin"] == EHR
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()


def test_wildcard_only_in_development(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_ENV", "production")
    monkeypatch.setenv("CDS_CORS_ORIGINS", "*")
    with pytest.raises(ConfigurationError, match="CDS_CORS_ORIGINS"):
        load_settings(database_url=f"sqlite:///{tmp_path}/f.db")
    monkeypatch.setenv("CDS_ENV", "development")
    settings = load_settings(database_url=f"sqlite:///{tmp_path}/f.db")
    with TestClient(create_app(settings)) as client:
        response = client.get("/cds-services", headers={"Origin": "https://any.example"})
    assert response.headers["access-control-allow-origin"] == "*"


def test_origins_must_be_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDS_CORS_ORIGINS", "ehr.example.org")
    with pytest.raises(ConfigurationError, match="CDS_CORS_ORIGINS"):
        load_settings()


def test_health_and_readiness(tmp_path: Path) -> None:
    with make(tmp_path) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "checks": {
            "services": "ok",
            "database": "ok",
            "rules": "ok",
            "auth": "disabled (local trial only)",
            "rate_limits": "local to this process",  # no CDS_REDIS_URL
        },
    }


def test_not_ready_when_the_database_is_down(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/f.db")
    with TestClient(create_app(settings)) as client:
        store = client.app.state.resources.feedback  # type: ignore[attr-defined]

        async def down() -> bool:
            return False

        store.ping = down
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "unreachable"
