"""The workbench in a real browser (Debian's chromium, headless, driven by Playwright) against a
running server: live figures from real hook calls and feedback, a rule page that simulates its
version on the 55 Synthea patients, and the playground from a blank rule to a tested rule with
its population card rate, a fixture patient's card following the author's edits, and lint errors
at line:col. Screenshots go to CDS_TEST_SCREENSHOT_DIR (docs/ when refreshed)."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cds_service.config import Settings
from cds_service.main import create_app
from deploy.topology import free_port
from tests.smart.test_browser import CHROMIUM, serve_app
from tests.workbench.test_analytics import BEN, DARWIN, _feedback, _resources, _running_clock
from tests.workbench.test_playground import FIRING, SYNTHEA_55

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from datetime import UTC, datetime

    from cds_service.fhir_double import FhirDouble

    tmp = tmp_path_factory.mktemp("workbench-browser")
    darwin, ben = _resources(DARWIN), _resources(BEN)
    fhir = FhirDouble(darwin + ben)
    last = max(
        (r for r in darwin if r["resourceType"] == "Encounter"), key=lambda e: e["period"]["start"]
    )
    clock = _running_clock(datetime.fromisoformat(last["period"]["start"]).astimezone(UTC))
    settings = Settings(
        env="development",
        database_url=f"sqlite:///{tmp}/wb.db",
        builtin_services=False,
        rules_reload_seconds=0,
        workbench_population=SYNTHEA_55,
        workbench_workdir=tmp / "workbench",
        workbench_auth="disabled",
    )
    app = create_app(settings, fhir_transport=httpx.MockTransport(fhir.handle), clock=clock)
    port = free_port()
    stop = serve_app(app, port)
    base = f"http://127.0.0.1:{port}"
    # Live data: Darwin's chart opened four times, Ben's twice; feedback on three cards.
    cards: list[dict[str, Any]] = []
    for patient, times in ((darwin, 4), (ben, 2)):
        patient_id = next(r["id"] for r in patient if r["resourceType"] == "Patient")
        for _ in range(times):
            body = {
                "hook": "patient-view",
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": fhir.base_url,
                "context": {"userId": "Practitioner/1", "patientId": patient_id},
            }
            answer = httpx.post(f"{base}/cds-services/preventive-care", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            cards += answer.json()["cards"]
    htn = [c for c in cards if c["summary"].startswith("Hypertension not controlled")]
    statin = [c for c in cards if c["summary"].startswith("10-year ASCVD risk")]
    feedback = [
        _feedback(htn[0], "overridden", "white-coat"),
        _feedback(statin[0], "accepted"),
        _feedback(statin[1], "accepted"),
    ]
    sent = httpx.post(f"{base}/cds-services/preventive-care/feedback", json={"feedback": feedback})
    assert sent.status_code == 200, sent.text
    try:
        yield base
    finally:
        stop()


def _browser(playwright: Any) -> Any:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
    )


@contextlib.contextmanager
def _opened(height: int) -> Iterator[tuple[Any, list[str]]]:
    """A page in headless chromium, and the console errors it logs."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            yield page, errors
        finally:
            browser.close()


def _shots(tmp_path: Path) -> Path:
    return Path(os.environ.get("CDS_TEST_SCREENSHOT_DIR") or tmp_path)


def test_rules_and_rule_pages(server: str, tmp_path: Path) -> None:
    with _opened(900) as (page, errors):
        page.goto(f"{server}/workbench/rules?days=7")
        row = page.locator(
            "tr", has=page.locator('a[href="/workbench/rules/hypertension-uncontrolled"]')
        )
        cells = row.locator("td").all_inner_texts()
        assert len(cells) == 14, page.inner_text("body")[:2000]
        assert cells[5] == "6" and cells[6] == "66.7 %"  # 6 calls, 4 fired
        assert "Home or ambulatory readings at goal (1)" in cells[12]
        page.screenshot(path=str(_shots(tmp_path) / "workbench-rules.png"), full_page=False)

        page.click('a[href="/workbench/rules/statin-for-ascvd-risk"]')
        page.wait_for_selector("h1")
        assert "No population simulation recorded yet" in page.inner_text("body")
        page.click("button[data-simulate-rule]")
        page.wait_for_selector("table tr.current", timeout=60_000)  # recorded, page reloaded
        simulation = page.locator("tr.current td").all_inner_texts()
        assert simulation[0] == "2" and simulation[3] == "55"  # version 2, 55 patients
        stats = dict(
            zip(
                page.locator("dl.stats dt").all_inner_texts(),
                page.locator("dl.stats dd").all_inner_texts(),
                strict=True,
            )
        )
        assert (stats["Cards"], stats["Accepted"], stats["Ignored"]) == ("4", "2", "2")
        assert page.locator("svg.chart rect").count() >= 2
        assert "passed, 0 failed" in page.inner_text("body")
        assert page.locator("pre.yaml .y-key").count() > 50
        page.screenshot(path=str(_shots(tmp_path) / "workbench-rule.png"), full_page=True)
        assert errors == []


def test_playground_from_blank_rule_to_tested_and_simulated(server: str, tmp_path: Path) -> None:
    with _opened(1000) as (page, errors):
        page.goto(f"{server}/workbench/playground")
        page.wait_for_selector("#lint .ok")  # the blank rule lints clean
        page.click("#run-tests")
        page.wait_for_selector("#tests-summary")
        assert page.inner_text("#tests-summary") == "2 passed, 0 failed"
        page.click("#simulate")
        page.wait_for_selector("#simulated-rate", timeout=60_000)
        calls = int(page.locator("#simulation-result tr").nth(1).locator("td").inner_text())
        fired = int(page.inner_text("#simulated-fired"))
        assert calls == 55 and 0 < fired <= 55  # every adult's chart
        assert "once active" in page.inner_text("#simulation-result")  # a draft's shadow
        # A fixture patient: the card as an EHR shows it, beside the explain trace.
        page.wait_for_selector(f'#patient option[value="{FIRING}"]', state="attached")
        page.select_option("#patient", FIRING)
        page.wait_for_selector("article.card")
        assert (
            page.inner_text("article.card .summary") == "A one-line summary (under 140 characters)"
        )
        # The author edits the summary: the card follows as they type.
        editor = page.locator("#rule-editor")
        text = editor.input_value()
        editor.fill(
            text.replace("A one-line summary (under 140 characters)", "Adult: {{ageYears}} years")
        )
        page.locator("article.card .summary", has_text=re.compile(r"^Adult: \d+")).wait_for()
        assert page.inner_text("#trace-status") == "fired"
        page.screenshot(path=str(_shots(tmp_path) / "workbench-playground.png"), full_page=True)
        # A mistake is shown where it is, and the served rules are untouched.
        broken = editor.input_value().replace("indicator: info", "indicator: loud")
        editor.fill(broken)
        page.wait_for_selector("#lint li.error")
        line = next(n for n, t in enumerate(broken.split("\n"), 1) if "indicator: loud" in t)
        assert f"rule {line}:" in page.inner_text("#lint li.error")
        assert page.locator("#rule-gutter .err").inner_text() == str(line)
        page.wait_for_selector("#card .issues")  # the last good card is not left showing
        assert page.locator("article.card").count() == 0
        page.screenshot(path=str(_shots(tmp_path) / "workbench-playground-error.png"))
        assert errors == [] or all("422" in e or "400" in e for e in errors)
    served = httpx.get(f"{server}/workbench/api/rules").json()["rules"]
    assert "my-new-rule" not in {r["rule"] for r in served}
