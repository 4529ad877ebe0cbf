"""The card-rate gate: the Synthea population replayed through the services, as `make card-rates`
does, with every patient-view service under a 15 % card rate, no rule erring on any replayed
hook, and the tables in rules/README.md current."""

from __future__ import annotations

import pytest

from cds_service.population.report import Report
from scripts import card_rates

GATE = card_rates.GATE


@pytest.fixture(scope="module")
def report() -> Report:
    return card_rates.population_report()


@pytest.fixture(scope="module")
def rule_services() -> set[str]:
    return card_rates.rule_service_ids()


@pytest.mark.parametrize("hook", card_rates.HOOKS)
def test_no_rule_errs_or_times_out_on_the_population(report: Report, hook: str) -> None:
    assert report.patients == 55
    assert any(rule.hook == hook for rule in report.rules.values()), f"no rule serves {hook}"
    failing = {rule: report.rules[rule].errors for rule in report.failing_rules()}
    assert failing == {}


def test_patient_view_services_are_under_the_15_percent_gate(report: Report) -> None:
    """Built-in or rule service alike: a chart opening is not a moment to card most patients."""
    gated = {s: c for (s, hook), c in report.services.items() if hook == card_rates.GATED_HOOK}
    assert "preventive-care" in gated
    over = {s: f"{c.rate:.1%}" for s, c in gated.items() if c.rate >= GATE}
    assert over == {}


def test_the_visit_replay_calls_the_care_gap_rules_at_an_office_visit(report: Report) -> None:
    """The care gaps moved to encounter-start still fire for the patients they are due for."""
    for rule in ("pneumococcal-vaccine-due", "diabetes-screening-due"):
        assert report.rules[rule].hook == "encounter-start"
        assert report.rules[rule].statuses.get("fired", 0) > 0, rule
    assert ("allergy-documentation", "encounter-start") in report.services


def test_the_card_rate_table_in_the_rule_guide_is_current(
    report: Report, rule_services: set[str]
) -> None:
    committed = card_rates.DOCUMENT.read_text(encoding="utf-8")
    table = card_rates.render_all(report, rule_services)
    assert card_rates.replace_table(committed, table) == committed, (
        "rules/README.md's card-rate table is out of date: run `make card-rates`"
    )
