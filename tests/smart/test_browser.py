"""End to end in a real browser (Debian's chromium, headless, driven by Playwright): a CDS card's
SMART link, through the EHR's authorization page, to the rendered clinician view."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
import yaml
from fastapi import FastAPI

from cds_service.config import Settings
from cds_service.fhir_double import FhirDouble
from cds_service.main import create_app
from cds_service.services.registry import shared_id
from deploy.topology import free_port
from tests.conftest import FIXTURES
from tests.smart.simulator import Simulator, serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
DARWIN = (
    FIXTURES / "fhir-r4" / "synthea" / "Darwin_McLaughlin_429f802a-51cc-48c3-85d4-1a72bb718fc2.json"
)
SCOPES = (
    "launch openid fhirUser online_access patient/Patient.rs patient/Observation.rs "
    "patient/Condition.rs patient/MedicationRequest.rs patient/Encounter.rs"
)

pytestmark = pytest.mark.browser


def serve_app(app: FastAPI, port: int) -> Callable[[], None]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)

    return stop


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Simulator, str]]:
    """The service in production mode beside the simulated EHR (plain http on loopback)."""
    yield from _running(tmp_path, "production")


@pytest.fixture
def running_development(tmp_path: Path) -> Iterator[tuple[Simulator, str]]:
    """The same in development mode, where the EHR's http style URL may be fetched."""
    yield from _running(tmp_path, "development")


@pytest.fixture
def running_write_back(tmp_path: Path) -> Iterator[tuple[Simulator, str]]:
    """A tenant that enables saving to the chart (the launch asks for RiskAssessment.c)."""
    yield from _running(tmp_path, "production", write_back=True)


def _running(
    tmp_path: Path, env: str, *, write_back: bool = False
) -> Iterator[tuple[Simulator, str]]:
    sim_port, app_port = free_port(), free_port()
    base = f"http://127.0.0.1:{app_port}"
    sim = Simulator(
        base_url=f"http://127.0.0.1:{sim_port}/sim",
        bundle=json.loads(DARWIN.read_text()),
        redirect_uris=[f"{base}/smart/callback"],
        fhir_latency=0.05,
    )
    tenants = tmp_path / "tenants.yaml"
    tenants.write_text(
        yaml.safe_dump(
            {
                "tenants": [
                    {
                        "id": "ehr",
                        "issuer": "http://127.0.0.1",
                        "jwks_url": "http://127.0.0.1/jwks.json",
                        "fhir_servers": [sim.fhir_base],
                        "smart": {
                            "client_id": "cds-service-app",
                            "scopes": SCOPES,
                            "write_back": write_back,
                        },
                    }
                ]
            }
        )
    )
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/cds.db",
        tenants_file=tenants,
        public_base_url=base,
        env=env,
    )
    stop_sim = serve_in_thread(sim, sim_port)
    # The day of Darwin's last visit, so the record's labs are recent for the card and the view.
    visit = datetime(2019, 10, 10, 23, 0, tzinfo=UTC)
    stop_app = serve_app(create_app(settings, clock=lambda: visit), app_port)
    try:
        yield sim, base
    finally:
        stop_app()
        stop_sim()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_card_link_to_the_clinician_view(running: tuple[Simulator, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    sim, base = running
    # 1. The EHR calls the hook; the statin card carries a SMART link to our app.
    local = FhirDouble.from_bundle(json.loads(DARWIN.read_text()))
    patient = local.resources("Patient")[0]["id"]
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/1", "patientId": patient},
    }
    discovery = httpx.get(f"{base}/cds-services").json()["services"]
    templates = next(
        s
        for s in discovery
        if shared_id(s["id"], s["hook"]) == "preventive-care" and s["hook"] == "patient-view"
    )["prefetch"]
    body["prefetch"] = {
        k: local.get(t.replace("{{context.patientId}}", patient)) for k, t in templates.items()
    }
    answer = httpx.post(f"{base}/cds-services/preventive-care", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    cards = answer.json()["cards"]
    link = next(
        link
        for card in cards
        for link in card.get("links", [])
        if link["type"] == "smart" and "statin" in link.get("appContext", "")
    )
    assert link["url"] == f"{base}/smart/launch"
    # 2. The clinician clicks it: the EHR opens the launch URL with iss and a launch id; in a
    # wide window and in a 400 px side panel.
    shots = Path(os.environ.get("CDS_TEST_SCREENSHOT_DIR") or tmp_path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            visit = max(local.resources("Encounter"), key=lambda e: e["period"]["start"])
            for width, shot in ((1280, "smart-view.png"), (400, "smart-view-400.png")):
                launch = sim.launch_id(
                    patient=patient, encounter=visit["id"], app_context=link["appContext"]
                )
                url = f"{link['url']}?{urlencode({'iss': sim.fhir_base, 'launch': launch})}"
                page = browser.new_page(viewport={"width": width, "height": 800})
                started = time.perf_counter()
                page.goto(url, wait_until="domcontentloaded")
                elapsed = time.perf_counter() - started
                # 3. Through authorization to our page: the card's question answered first,
                # in one line, without scrolling.
                assert page.url == f"{base}/smart/app"
                text = page.inner_text("body")
                assert "Darwin" in text and "McLaughlin" in text
                # The EHR's style URL is plain http: not fetched in production.
                background = page.evaluate("getComputedStyle(document.body).backgroundColor")
                assert background == "rgb(255, 255, 255)"
                headline = page.locator("section.focus .headline")
                assert headline.inner_text() == "10-year ASCVD risk 15.4 % — intermediate"
                box = headline.bounding_box()
                assert box is not None and box["y"] + box["height"] <= 800, box
                assert "statin" in text.lower()  # the card it came from
                # What the card suggests, right under the answer, as the EHR offers it.
                suggested = page.locator("section.focus .suggestions li").all_inner_texts()
                assert suggested == [
                    "Start atorvastatin 20 mg daily (moderate intensity)",
                    "Record the 10-year ASCVD risk in the chart",
                ]
                # The launch's encounter, read with the user's token.
                assert (
                    "Encounter: Office visit: General examination of patient (procedure) — "
                    "2019-10-10" in text
                )
                # What therapy would change, by hand from the equations' 15.45 %: x 0.8721
                # (moderate statin: LDL-C 71 mg/dL lowered 30 %, 0.78 per mmol/L), x 0.7960
                # (high, 50 %), x 0.6998 (systolic 146 to 130 mmHg, 0.80 per 10), both together.
                table = page.locator("section.focus table.what-if")
                risks = dict(
                    zip(
                        table.locator("th[scope=row]").all_inner_texts(),
                        table.locator("td.risk").all_inner_texts(),
                        strict=True,
                    )
                )
                assert risks["Current risk"] == "15.4 %"
                assert risks["Moderate-intensity statin"] == "13.5 % (-2.0)"
                assert risks["High-intensity statin"] == "12.3 % (-3.2)"
                assert risks["Systolic BP to 130 mmHg"] == "10.8 % (-4.6)"
                assert risks["All of these"] == "8.6 % (-6.8)"
                assert "Optimal risk factors" in risks
                # The inputs in clinical words; a resource id only on demand.
                focus = page.locator("section.focus")
                assert "Total cholesterol" in focus.inner_text()
                assert "Observation/" not in focus.inner_text()
                page.locator("section.focus details.ref summary").first.click()
                assert "Observation/" in focus.inner_text() or "Patient/" in focus.inner_text()
                # Other scores folded to one line each; those that do not apply left out.
                assert page.locator("details.score.other").count() >= 1
                assert "CHA2DS2-VASc: no atrial fibrillation on record" in text
                assert page.locator("svg").count() >= 3
                page.screenshot(path=str(shots / shot), full_page=True)
                print(f"launch to rendered view at {width} px: {elapsed * 1000:.0f} ms")
            # 4. Signing out revokes the tokens and ends the session.
            page.click("text=Log out")
            assert "Signed out" in page.inner_text("body")
            assert len(sim.revoked) >= 1
        finally:
            browser.close()


AXE = Path(__file__).resolve().parents[2] / ".cache/npm/node_modules/axe-core/axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
@pytest.mark.skipif(not AXE.exists(), reason="needs axe-core (`make axe` installs it)")
def test_the_clinician_view_in_the_ehrs_style_passes_axe_at_both_widths(
    running_development: tuple[Simulator, str], tmp_path: Path
) -> None:
    """The EHR's SMART style applied (its background, text colour and fonts), then axe-core's
    WCAG 2.1 A and AA rules on the launched view, its folded parts opened too: no serious or
    critical violation at 1280 px or at 400 px. The report and a screenshot in the EHR's style
    go beside the other screenshots (CDS_TEST_SCREENSHOT_DIR)."""
    from playwright.sync_api import sync_playwright

    sim, base = running_development
    shots = Path(os.environ.get("CDS_TEST_SCREENSHOT_DIR") or tmp_path)
    patient = FhirDouble.from_bundle(json.loads(DARWIN.read_text())).resources("Patient")[0]["id"]
    report: dict[str, list[dict[str, object]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            # The page forbids every script (CSP): only the test's own axe may run in it.
            context = browser.new_context(bypass_csp=True)
            for width in (1280, 400):
                app_context = '{"rule":"statin-for-ascvd-risk"}'
                launch = sim.launch_id(patient=patient, app_context=app_context)
                page = context.new_page()
                page.set_viewport_size({"width": width, "height": 800})
                page.goto(
                    f"{base}/smart/launch?{urlencode({'iss': sim.fhir_base, 'launch': launch})}"
                )
                assert page.url == f"{base}/smart/app"
                body = page.evaluate(
                    "(() => { const s = getComputedStyle(document.body);"
                    " return [s.backgroundColor, s.color, s.fontFamily, s.fontSize]; })()"
                )
                assert body[:2] == ["rgb(237, 234, 227)", "rgb(48, 48, 48)"], body
                assert body[2].startswith("Georgia") and body[3] == "13px", body
                if width == 1280:
                    page.screenshot(path=str(shots / "smart-view-ehr-style.png"))
                page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
                page.add_script_tag(path=str(AXE))
                result = page.evaluate(
                    "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                    WCAG_21_AA,
                )
                assert result["passes"], "axe ran no rule"
                report[f"{width}px"] = [
                    {
                        "id": v["id"],
                        "impact": v["impact"],
                        "help": v["help"],
                        "nodes": [n["target"][0] for n in v["nodes"]][:10],
                        "why": [n.get("failureSummary", "")[-160:] for n in v["nodes"]][:3],
                    }
                    for v in result["violations"]
                ]
        finally:
            browser.close()
    (shots / "smart-view-axe.json").write_text(json.dumps(report, indent=2) + "\n")
    serious = [
        (width, v["id"], v["help"])
        for width, violations in report.items()
        for v in violations
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == [], serious


def _launched(sim: Simulator, base: str, page: Any) -> None:
    patient = FhirDouble.from_bundle(json.loads(DARWIN.read_text())).resources("Patient")[0]["id"]
    launch = sim.launch_id(patient=patient, app_context='{"rule":"statin-for-ascvd-risk"}')
    page.goto(f"{base}/smart/launch?{urlencode({'iss': sim.fhir_base, 'launch': launch})}")
    assert page.url == f"{base}/smart/app"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_save_to_chart_writes_a_risk_assessment_with_the_users_token(
    running_write_back: tuple[Simulator, str], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    sim, base = running_write_back
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _launched(sim, base, page)
            authorize = next(r for r in sim.requests if r.path.endswith("/auth/authorize"))
            assert "patient/RiskAssessment.c" in authorize.query.get("scope", "")
            page.click("section.focus form.save button")
            # Back on the view, which says what the EHR answered.
            assert page.url == f"{base}/smart/app"
            notice = page.locator("p.notice.saved").inner_text()
            assert notice == "Saved to the chart as RiskAssessment/ra-1"
            [created] = sim.created
            patient = created["subject"]["reference"]
            assert patient.startswith("Patient/") and created["status"] == "final"
            assert created["method"]["coding"][0]["code"] == "ascvd"
            prediction = created["prediction"][0]
            assert prediction["probabilityDecimal"] == 0.1545  # the 15.45 % the view shows
            assert prediction["qualitativeRisk"]["text"] == "intermediate"
            assert prediction["whenRange"]["high"]["value"] == 10
            basis = {b["reference"].split("/")[0] for b in created["basis"]}
            assert {"Patient", "Observation", "MedicationRequest"} <= basis
            assert created["performer"]["reference"] == sim.fhir_user
            # The notice is shown once; a failed write says why, in words, and is not retried.
            page.reload()
            assert page.locator("p.notice").count() == 0
            sim.fail_creates = (422, "RiskAssessment.prediction: probability out of range")
            page.click("section.focus form.save button")
            failed = page.locator("p.notice.failed").inner_text()
            assert failed == (
                "Not saved: the EHR answered 422 "
                "(RiskAssessment.prediction: probability out of range)"
            )
            posts = [r for r in sim.requests if r.path.endswith("/fhir/RiskAssessment")]
            assert len(posts) == 2 and len(sim.created) == 1
        finally:
            browser.close()
    # Both writes are in the audit trail, by outcome; the id the EHR gave is kept.
    with sqlite3.connect(tmp_path / "cds.db") as db:
        rows = db.execute(
            "SELECT service, outcome, detail FROM cds_audit WHERE kind = 'chart-write' ORDER BY id"
        ).fetchall()
    assert rows == [("ascvd", 201, "RiskAssessment/ra-1"), ("ascvd", 422, "422 not saved")]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_no_save_button_without_write_back(running: tuple[Simulator, str]) -> None:
    from playwright.sync_api import sync_playwright

    sim, base = running
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            _launched(sim, base, page)
            authorize = next(r for r in sim.requests if r.path.endswith("/auth/authorize"))
            assert "RiskAssessment" not in authorize.query.get("scope", "")
            assert page.locator("form.save").count() == 0
        finally:
            browser.close()
    # Posting anyway is refused: the session's token cannot write.
    answer = httpx.post(f"{base}/smart/save", data={"score": "ascvd", "csrf": "x"})
    assert answer.status_code in (401, 403)
