"""`Metrics` reads the counters it is handed at each scrape (no app state needed)."""

from __future__ import annotations

from dataclasses import dataclass, field

from cds_service.metrics import Metrics
from cds_service.scores.cache import CacheStats


@dataclass
class RuleStats:
    """Stands in for the rule engine's counters (rule id → status → count)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def test_reads_the_counters_it_is_given_when_scraped() -> None:
    rules = RuleStats()
    cache = CacheStats()
    refusals: dict[str, int] = {}
    metrics = Metrics(rules=rules, score_cache=cache, refusals=refusals)
    rules.counts["r1"] = {"fired": 2, "silent": 1, "calls": 3}
    cache.local_hits, cache.redis_hits, cache.misses, cache.redis_errors = 4, 5, 6, 7
    refusals["expired"] = 8
    text = metrics.render().decode()
    assert 'cds_rule_evaluations_total{rule="r1",status="fired"} 2.0' in text
    assert 'cds_rule_evaluations_total{rule="r1",status="silent"} 1.0' in text
    assert 'status="calls"' not in text
    assert 'cds_rule_cards_total{rule="r1"} 2.0' in text
    assert 'cds_score_cache_total{level="local",result="hit"} 4.0' in text
    assert 'cds_score_cache_total{level="redis",result="hit"} 5.0' in text
    assert 'cds_score_cache_total{level="any",result="miss"} 6.0' in text
    assert "cds_score_cache_redis_errors_total 7.0" in text
    assert 'cds_jwt_refusals_total{reason="expired"} 8.0' in text


def test_without_rules_the_rule_series_are_empty() -> None:
    metrics = Metrics(rules=None, score_cache=CacheStats(), refusals={})
    text = metrics.render().decode()
    assert "cds_rule_evaluations_total{" not in text
    assert "cds_score_cache_total" in text
