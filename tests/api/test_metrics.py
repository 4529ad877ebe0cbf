"""`/metrics` after real calls: the series operators alert on, and request ids."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.main import create_app
from tests.api.calls import nsaid_on_warfarin_call


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_after_calls(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/f.db")
    body = nsaid_on_warfarin_call()
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/cds-services/medication-safety", json=body, headers={"X-Request-Id": "trace-123"}
        )
        assert response.headers["x-request-id"] == "trace-123"
        assert client.get("/healthz").headers["x-request-id"]  # generated when not sent
        client.post("/cds-services/medication-safety", json={"hook": "order-select"})  # 400
        [card] = [c for c in response.json()["cards"] if c["summary"].startswith("Bleeding risk")]
        feedback = {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "outcomeTimestamp": "2026-11-28T10:00:00Z",
                    "overrideReason": {
                        "reason": {
                            "code": "short-course",
                            "system": "urn:cds-service:override-reason",
                        }
                    },
                }
            ]
        }
        client.post("/cds-services/medication-safety/feedback", json=feedback)
        text = client.get("/metrics").text
    assert (
        sample(
            text,
            "cds_requests_total",
            kind="hook",
            service="medication-safety",
            hook="order-select",
            status="200",
        )
        == 1
    )
    assert sample(text, "cds_requests_total", status="400") == 1
    assert sample(text, "cds_request_duration_seconds_count", service="medication-safety") >= 1
    assert sample(text, "cds_calls_with_cards_total", service="medication-safety") == 1
    assert (
        sample(text, "cds_rule_evaluations_total", rule="nsaid-with-anticoagulant", status="fired")
        == 1
    )
    assert sample(text, "cds_rule_cards_total", rule="nsaid-with-anticoagulant") == 1
    assert sample(text, "cds_prefetch_keys_total", source="prefetch") >= 1
    assert (
        sample(
            text,
            "cds_feedback_total",
            service="medication-safety",
            rule="nsaid-with-anticoagulant",
            outcome="overridden",
            reason="short-course",
        )
        == 1
    )
    assert "cds_score_cache_total" in text and "cds_jwt_refusals" in text
