"""Live figures per rule, as an EHR produces them: real hook calls and feedback over HTTP to a
running server (two replicas on one database), then the workbench's API, page and /metrics.

Darwin (Synthea) opens with two cards of the bundled pack (hypertension not controlled, ASCVD
risk without a statin). The service's clock runs (microseconds and all) from the start of his
last encounter, so the rules see his record as it stood then.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from deploy.topology import free_port
from tests.conftest import FIXTURES
from tests.smart.test_browser import serve_app

SYNTHEA = FIXTURES / "fhir-r4" / "synthea"
DARWIN = SYNTHEA / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
BEN = SYNTHEA / "Ben_Bergstrom_588675dc-e80e-4528-a78f-af10f9755f23.json"
HTN = "hypertension-uncontrolled"


def _resources(path: Path) -> list[dict[str, Any]]:
    return [e["resource"] for e in json.loads(path.read_text())["entry"]]


def _running_clock(start: datetime) -> Any:
    began = time.time()
    return lambda: datetime.fromtimestamp(start.timestamp() + time.time() - began, UTC)


class Replicas:
    """Two servers of the same deployment: one database, the bundled rules."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        darwin, ben = _resources(DARWIN), _resources(BEN)
        self.fhir = FhirDouble(darwin + ben)
        self.darwin = next(r["id"] for r in darwin if r["resourceType"] == "Patient")
        self.ben = next(r["id"] for r in ben if r["resourceType"] == "Patient")
        last = max(
            (r for r in darwin if r["resourceType"] == "Encounter"),
            key=lambda e: e["period"]["start"],
        )
        clock = _running_clock(datetime.fromisoformat(last["period"]["start"]).astimezone(UTC))
        settings = Settings(
            database_url=database_url,
            builtin_services=False,
            rules_reload_seconds=0,
            workbench_workdir=tmp_path / "workbench",
            workbench_auth="disabled",
        )
        self.urls: list[str] = []
        self.stops = []
        for _ in range(2):
            app = create_app(
                settings, fhir_transport=httpx.MockTransport(self.fhir.handle), clock=clock
            )
            port = free_port()
            self.stops.append(serve_app(app, port))
            self.urls.append(f"http://127.0.0.1:{port}")

    def open_chart(self, replica: int, patient: str) -> list[dict[str, Any]]:
        body = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": self.fhir.base_url,
            "context": {"userId": "Practitioner/1", "patientId": patient},
        }
        response = httpx.post(f"{self.urls[replica]}/cds-services/preventive-care", json=body)
        assert response.status_code == 200, response.text
        cards: list[dict[str, Any]] = response.json()["cards"]
        return cards

    def close(self) -> None:
        for stop in self.stops:
            stop()


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Iterator[Replicas]:
    running = Replicas(database_url, tmp_path)
    try:
        yield running
    finally:
        running.close()


def _feedback(card: dict[str, Any], outcome: str, reason: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "card": card["uuid"],
        "outcome": outcome,
        "outcomeTimestamp": datetime.now(UTC).isoformat(),
    }
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    if reason is not None:
        item["overrideReason"] = {
            "reason": {"code": reason, "system": "urn:cds-service:override-reason"}
        }
    return item


def test_figures_follow_calls_and_feedback_across_replicas(replicas: Replicas) -> None:
    hypertension, statin = [], []
    for n in range(5):  # Darwin's chart opened five times, through both replicas
        cards = replicas.open_chart(n % 2, replicas.darwin)
        hypertension += [c for c in cards if c["summary"].startswith("Hypertension not controlled")]
        statin += [c for c in cards if c["summary"].startswith("10-year ASCVD risk")]
    for n in range(3):  # Ben's chart: no card of these rules
        replicas.open_chart(n % 2, replicas.ben)
    assert len(hypertension) == len(statin) == 5
    feedback = [
        _feedback(hypertension[0], "overridden", "white-coat"),
        _feedback(hypertension[1], "overridden", "white-coat"),
        _feedback(hypertension[2], "overridden", "recently-intensified"),
        _feedback(statin[0], "accepted"),
        _feedback(statin[1], "accepted"),
        _feedback(statin[2], "overridden", "risk-overestimated"),
    ]
    # Feedback goes to the other replica than most of the cards: the cards are in the database.
    sent = httpx.post(
        f"{replicas.urls[1]}/cds-services/preventive-care/feedback", json={"feedback": feedback}
    )
    assert sent.status_code == 200, sent.text

    for url in replicas.urls:  # every replica shows the same figures
        answer = httpx.get(f"{url}/workbench/api/rules", params={"days": 7})
        assert answer.status_code == 200, answer.text
        rules = {r["rule"]: r for r in answer.json()["rules"]}
        htn = rules[HTN]
        assert htn["calls"] == 8
        assert (htn["cards"], htn["fired"]) == (5, 5)
        assert htn["fireRate"] == pytest.approx(5 / 8, abs=1e-4)
        assert (htn["accepted"], htn["overridden"], htn["ignored"]) == (0, 3, 2)
        assert htn["acceptanceRate"] == 0
        assert htn["overrideReasons"] == [
            {"code": "white-coat", "display": "Home or ambulatory readings at goal", "count": 2},
            {
                "code": "recently-intensified",
                "display": "Treatment recently intensified",
                "count": 1,
            },
        ]
        assert htn["version"] == "2" and htn["status"] == "active"
        # Any card on preventive-care: Darwin's five calls of eight.
        assert htn["cardRate"] == pytest.approx(5 / 8, abs=1e-4)
        statin = rules["statin-for-ascvd-risk"]
        assert (statin["cards"], statin["accepted"], statin["overridden"]) == (5, 2, 1)
        assert statin["ignored"] == 2 and statin["acceptanceRate"] == pytest.approx(0.4)

    detail = httpx.get(f"{replicas.urls[0]}/workbench/api/rules/{HTN}", params={"days": 7})
    assert detail.status_code == 200
    days = [d for d in detail.json()["timeline"] if d["cards"] or d["accepted"] or d["overridden"]]
    assert [(d["cards"], d["accepted"], d["overridden"]) for d in days] == [(5, 0, 3)]
    assert "schema: cds-rule/1" in detail.json()["source"]

    # The page runs the rule's tests in a worker process (the first one spawned here): on a
    # slow machine that alone passes httpx's default 5 s; what is tested is the figures.
    page = httpx.get(f"{replicas.urls[0]}/workbench/rules/{HTN}", params={"days": 7}, timeout=60)
    assert page.status_code == 200
    assert "Home or ambulatory readings at goal" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]

    metrics = httpx.get(f"{replicas.urls[1]}/metrics").text
    line = (
        'cds_feedback_total{outcome="overridden",reason="white-coat",'
        f'rule="{HTN}",service="preventive-care"}} 2.0'
    )
    assert line in metrics


def test_a_window_without_data_shows_zeros(replicas: Replicas) -> None:
    answer = httpx.get(f"{replicas.urls[0]}/workbench/api/rules", params={"days": 1})
    rules = {r["rule"]: r for r in answer.json()["rules"]}
    assert rules[HTN]["calls"] == 0 and rules[HTN]["fireRate"] is None
    assert len(rules) >= 30  # every served rule is listed, with or without data


@pytest.mark.parametrize("days", ["0", "400", "x"])
def test_bad_window_is_a_400_naming_days(replicas: Replicas, days: str) -> None:
    answer = httpx.get(f"{replicas.urls[0]}/workbench/api/rules", params={"days": days})
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["days"]
