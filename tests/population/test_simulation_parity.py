"""A simulation answers as the running service does: for every patient of the Synthea export,
each simulated call (patient-view at the record's last date, encounter-start at its last
encounter) is sent to the HTTP service as an EHR would send it — same context, the record as it
stood then behind `fhirServer`, the service's clock at that moment — and the cards match."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings, default_rules_dir
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.population.moments import Moment
from cds_service.population.partition import partition, read_partition
from cds_service.population.report import Report
from cds_service.population.simulate import BASE_URL, Options, services_for, simulate_record
from cds_service.rules.pipeline import CallResult
from cds_service.services.definition import ServiceDefinition
from tests.conftest import FIXTURES

SYNTHEA_55 = FIXTURES / "bulk-ndjson" / "synthea-55-patients"
HOOKS = ("patient-view", "encounter-start")

Observed = tuple[str, str, str, datetime, dict[str, Any], list[dict[str, Any]], list[str]]


def _simulated(workdir: Path) -> list[Observed]:
    """Every simulated call: patient, hook, service, when, context, record, card summaries."""
    options = Options(rules_dir=str(default_rules_dir()), hooks=HOOKS)
    services = services_for(options.rules_dir, options.builtins)
    layout = partition(SYNTHEA_55, str(workdir), 1)
    seen: list[Observed] = []
    report = options.report()

    async def run() -> None:
        for patient_id, record in read_partition(str(workdir), 0, layout=layout):
            calls: list[tuple[Moment, ServiceDefinition, CallResult]] = []

            def observe(moment: Moment, service: ServiceDefinition, result: CallResult) -> None:
                calls.append((moment, service, result))  # noqa: B023 (used in this iteration)

            await simulate_record(services, patient_id, record, options, report, observe)
            for moment, service, result in calls:
                summaries = [card.summary for card in result.result.cards]
                seen.append(
                    (
                        patient_id,
                        moment.hook,
                        service.id,
                        moment.at,
                        moment.context,
                        moment.record,
                        summaries,
                    )
                )

    asyncio.run(run())
    assert isinstance(report, Report) and report.patients == 55
    return seen


class _Ehr:
    """The EHR's FHIR server and clock, set to the simulated moment before each call."""

    def __init__(self) -> None:
        self.double = FhirDouble([], base_url=BASE_URL, record=False)
        self.now = datetime.now()

    def handle(self, request: httpx.Request) -> httpx.Response:
        return self.double.handle(request)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> list[Observed]:
    return _simulated(tmp_path_factory.mktemp("parity"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, _Ehr]]:
    ehr = _Ehr()
    folder = tmp_path_factory.mktemp("served")
    settings = Settings(
        database_url=f"sqlite:///{folder}/f.db", auth="disabled", rule_budget_seconds=30
    )
    transport = httpx.MockTransport(ehr.handle)
    app = create_app(settings, fhir_transport=transport, clock=lambda: ehr.now)
    with TestClient(app) as client:
        yield client, ehr


def test_simulated_cards_are_the_cards_the_service_returns(
    simulated: list[Observed], served: tuple[TestClient, _Ehr]
) -> None:
    client, ehr = served
    assert len({patient for patient, *_ in simulated}) >= 50
    carded = 0
    for patient, hook, service, at, context, record, summaries in simulated:
        ehr.double = FhirDouble(record, base_url=BASE_URL, record=False)
        ehr.now = at
        body = {
            "hook": hook,
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": BASE_URL,
            "context": context,
        }
        response = client.post(f"/cds-services/{service}", json=body)
        assert response.status_code == 200, (patient, hook, service, response.text)
        answered = [card["summary"] for card in response.json()["cards"]]
        assert answered == summaries, (patient, hook, service)
        carded += bool(answered)
    assert carded >= 20  # the comparison covers cards, not only silence
