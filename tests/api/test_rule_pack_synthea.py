"""The bundled rule pack over HTTP on real Synthea records, fetched through `fhirServer`.

Each patient's chart is opened (patient-view), and their last visit checked in (encounter-start,
that encounter in context), at the start of their last encounter; the EHR sends no prefetch, so
the service fetches everything from the patient's FHIR data and computes the risk scores itself.
Expected cards follow from the records (see ../shared/fixtures/README.md). On opening the chart:
Darwin has hypertension with 146/100 and a 15 % ASCVD risk without a statin (USPSTF grade B);
Wenona has type 2 diabetes at 61 without a statin; Felipe (64) and Ulrike (78) had a stroke and
take no statin (secondary prevention); every patient with atrial fibrillation is already on
warfarin, so no anticoagulation card. At the office visit (the care gaps): three
overweight adults aged 35-70 have no HbA1c, fasting glucose or normal panel glucose in 3 years;
thirteen patients aged 50 or more have no pneumococcal conjugate vaccine (ACIP 2024); three aged
45-75 have no colorectal cancer screening test on record (USPSTF 2021); twelve adults aged 18-79
have never had a hepatitis C test (USPSTF 2020).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from tests.conformance import assert_conformant_response
from tests.conftest import FIXTURES

SYNTHEA = FIXTURES / "fhir-r4" / "synthea"
PCV = "No pneumococcal vaccine on record"
SCREEN = "Diabetes screening due"
CRC = "Colorectal cancer screening due"
HCV = "Hepatitis C screening due"
EXPECTED = {
    "patient-view": {
        "Darwin": ["Hypertension not controlled", "10-year ASCVD risk 15.4 % with hypertension"],
        # Wenona also has diabetic kidney disease, but no SGLT2 inhibitor card: her eGFR (CKD-EPI
        # 2021 from a creatinine of 2.89 mg/dL) is 18, and one is not started below 20 (KDIGO 2022).
        "Wenona": ["Diabetes at age 61, no statin"],
        # Clinical ASCVD (a stroke, SNOMED 230690007, in `ascvd`) without a statin: Felipe at 64
        # (class I, high intensity), Ulrike at 78 (class IIa, "consider"). Arnette (coronary
        # disease), Randolph and Seth (stroke) are over 75 on simvastatin: continuing is reasonable.
        "Felipe": ["Clinical ASCVD, no statin: start a high-intensity statin"],
        "Ulrike": ["Clinical ASCVD at 78, no statin: consider"],
    },
    "encounter-start": {
        # HCV: no hepatitis C test on record at 18-79 (USPSTF 2020, one-time; only Alyce has one,
        # the antibody test of her prenatal care). CRC: aged 45-75 with no colonoscopy, CT
        # colonography, sigmoidoscopy or stool test on record (Kory 61, Terence 46, Wendell 59;
        # the others had a colonoscopy within 10 years).
        "Abram": [PCV, HCV],
        "Alyce": [PCV],
        "Arnette": [HCV],
        "Arturo": [PCV, HCV],
        "Bibi": [SCREEN, PCV, HCV],
        "Chiquita": [PCV, HCV],
        "Darwin": [HCV],
        # Felipe is due both, but his last encounter is an emergency visit: they wait.
        "Felipe": [],
        "Jess": [PCV, HCV],
        "Kory": [PCV, CRC, HCV],
        "Randolph": [PCV],
        "Seth": [PCV],
        "Terence": [SCREEN, CRC, HCV],
        "Ulrike": [PCV, HCV],
        "Wendell": [PCV, CRC, HCV],
        "Wenona": [PCV, HCV],
    },
}
PATIENTS = sorted(p for p in SYNTHEA.glob("*.json") if not p.name.startswith("_"))


def last_encounter(server: FhirDouble) -> tuple[datetime, str]:
    latest = max(server.resources("Encounter"), key=lambda e: e.get("period", {}).get("start", ""))
    return datetime.fromisoformat(latest["period"]["start"]).astimezone(UTC), latest["id"]


@pytest.mark.parametrize("hook", sorted(EXPECTED))
@pytest.mark.parametrize("path", PATIENTS, ids=lambda p: p.name.split("_")[0])
def test_preventive_care_cards(path: Path, hook: str, tmp_path: Path) -> None:
    server = FhirDouble.from_bundle(json.loads(path.read_text()))
    patient_id = server.resources("Patient")[0]["id"]
    now, encounter_id = last_encounter(server)
    # What the cards say is tested, not how fast: a budget no loaded CI machine runs past
    # (the defaults timed a rule out once when the suite shared two cores with profiling).
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/f.db",
        builtin_services=False,
        hook_budget_seconds=30,
        prefetch_deadline_seconds=20,
    )
    app = create_app(settings, fhir_transport=httpx.MockTransport(server.handle), clock=lambda: now)
    context = {"userId": "Practitioner/1", "patientId": patient_id}
    if hook == "encounter-start":
        context["encounterId"] = encounter_id
    body = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": server.base_url,
        "context": context,
    }
    with TestClient(app) as client:
        response = client.post("/cds-services/preventive-care", json=body)
    assert response.status_code == 200, response.text
    assert_conformant_response(response.json())
    summaries = [card["summary"] for card in response.json()["cards"]]
    expected = EXPECTED[hook].get(path.name.split("_")[0], [])
    assert len(summaries) == len(expected), summaries
    for prefix in expected:
        assert any(s.startswith(prefix) for s in summaries), (prefix, summaries)
