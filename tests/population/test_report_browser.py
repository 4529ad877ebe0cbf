"""The HTML report of a real simulation, opened in a real browser (Debian's chromium, headless)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cds_service.population.cli import simulate
from cds_service.population.engine import Cluster
from cds_service.population.render import html
from tests.conftest import FIXTURES

CHROMIUM = Path("/usr/bin/chromium")
SYNTHEA_55 = FIXTURES / "bulk-ndjson" / "synthea-55-patients"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")
def test_the_html_report_shows_rates_rules_and_months(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    report = simulate(
        SYNTHEA_55,
        hooks=("patient-view", "encounter-start"),
        cluster=Cluster(workers=2),
        partitions=4,
    )
    page_file = tmp_path / "report.html"
    page_file.write_text(html(report.model(0.15), title="Synthea 55"), encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(page_file.as_uri())
            assert page.title() == "Synthea 55"
            services = page.locator("#services tr").all_inner_texts()
            # A header and one row per service and hook, the over-limit one flagged.
            assert any("preventive-care\tpatient-view" in row for row in services)
            over = page.locator("#services tr.over").all_inner_texts()
            assert over and all("encounter-start" in row for row in over)  # not gated there
            rules = page.locator("#rules tr").count()
            assert rules == len(report.rules) + 1
            bar = page.locator("#services svg.bar").first
            assert bar.get_attribute("aria-label", timeout=5000)
            assert page.locator("svg.months rect").count() >= 2
            shot = os.environ.get("CDS_TEST_SCREENSHOT_DIR")
            page.screenshot(
                path=str(Path(shot) if shot else tmp_path) + "/simulation-report.png",
                full_page=True,
            )
        finally:
            browser.close()
