"""The bundled rules ask the EHR for each piece of data once."""

from __future__ import annotations

import pytest

from cds_service.config import default_rules_dir
from cds_service.rules.ruleset import load_ruleset
from cds_service.rules.runtime import known_score_names
from cds_service.rules.service import RuleStats, services_from_rules
from cds_service.scores.sources import ComputedScores


@pytest.mark.parametrize("hook", ["patient-view", "appointment-book"])
def test_preventive_care_reads_the_problem_list_with_one_query(hook: str) -> None:
    """Rules filter clinical status themselves (`status:`), so one Condition search serves every
    rule and the scores (whose `scoreConditions` is the same search, fetched once)."""
    ruleset = load_ruleset(default_rules_dir(), known_score_names())
    services = services_from_rules(ruleset, scores=ComputedScores(), stats=RuleStats())
    service = next(s for s in services if s.id == "preventive-care")
    conditions = {
        spec.template
        for spec in service.prefetch_for(hook).values()
        if spec.template.startswith("Condition?")
    }
    assert conditions == {"Condition?patient={{context.patientId}}"}
