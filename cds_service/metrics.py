"""Prometheus metrics at `/metrics`: one registry per app (no import-time globals).

Counters updated on the request path (calls, durations, prefetch fetches, feedback) live here;
what other components already count (rule outcomes, score cache levels, JWT refusals) is read
from them when Prometheus scrapes, by a collector, so the hot path does no extra work for it.

Series (all prefixed `cds_`):
- `requests_total{kind,service,hook,status}`, `request_duration_seconds{kind,service,hook}`
- `calls_with_cards_total{service,hook}`: the card rate is this over `requests_total`
- `rule_evaluations_total{rule,status}` (fired, silent, skipped, error, timeout, shadow,
  suppressed),
  `rule_cards_total{rule}`
- `prefetch_keys_total{source}` (prefetch, fetched, null, unavailable, …),
  `prefetch_seconds` (time spent resolving a call's prefetch)
- `score_cache_total{level,result}` (local/redis hit, miss), `score_cache_redis_errors_total`
- `feedback_total{service,rule,outcome,reason}`: feedback items on issued cards; `rule` is the
  rule that produced the card (a built-in service's id for its cards), `reason` the override
  reason's code or `none`
- `feedback_refused_total{service,reason}`: feedback items refused (`unknown-card`: a card the
  service never issued to that tenant)
- `jwt_refusals_total{reason}`
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Metrics", "RuleCounts", "ScoreCacheCounts"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RuleCounts(Protocol):
    """Outcomes per rule (`rules.service.RuleStats`): rule id → status → count."""

    @property
    def counts(self) -> Mapping[str, Mapping[str, int]]: ...


class ScoreCacheCounts(Protocol):
    """Score cache lookups by level, and Redis failures (`scores.cache.CacheStats`)."""

    @property
    def local_hits(self) -> int: ...

    @property
    def redis_hits(self) -> int: ...

    @property
    def misses(self) -> int: ...

    @property
    def redis_errors(self) -> int: ...


class _CountsCollector(Collector):
    """Counts kept elsewhere, exported at scrape time (read then, never copied)."""

    def __init__(
        self,
        rules: RuleCounts | None,
        score_cache: ScoreCacheCounts,
        refusals: Mapping[str, int],
    ) -> None:
        self._rules = rules
        self._score_cache = score_cache
        self._refusals = refusals

    def collect(self) -> Iterator[Metric]:
        rules = CounterMetricFamily(
            "cds_rule_evaluations", "Rule evaluations by outcome", labels=["rule", "status"]
        )
        cards = CounterMetricFamily("cds_rule_cards", "Cards shown, by rule", labels=["rule"])
        if self._rules is not None:
            for rule, counts in sorted(self._rules.counts.items()):
                for status, value in sorted(counts.items()):
                    if status != "calls":
                        rules.add_metric([rule, status], value)
                cards.add_metric([rule], counts.get("fired", 0))
        yield rules
        yield cards
        cache = CounterMetricFamily(
            "cds_score_cache", "Score cache lookups", labels=["level", "result"]
        )
        errors = CounterMetricFamily("cds_score_cache_redis_errors", "Redis failures")
        stats = self._score_cache
        cache.add_metric(["local", "hit"], stats.local_hits)
        cache.add_metric(["redis", "hit"], stats.redis_hits)
        cache.add_metric(["any", "miss"], stats.misses)
        errors.add_metric([], stats.redis_errors)
        yield cache
        yield errors
        refusals = CounterMetricFamily(
            "cds_jwt_refusals", "Refused JWTs by reason", labels=["reason"]
        )
        for reason, value in sorted(self._refusals.items()):
            refusals.add_metric([reason], value)
        yield refusals


class Metrics:
    """The app's metrics.

    It is handed the counters other components keep, and reads them at each scrape: the rule
    outcomes (None when the services do not come from rules), the score cache's lookups and the
    JWT refusals by reason (a dict the authentication dependency updates).
    """

    def __init__(
        self,
        *,
        rules: RuleCounts | None,
        score_cache: ScoreCacheCounts,
        refusals: Mapping[str, int],
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "cds_requests",
            "Calls by kind, service, hook and status",
            ["kind", "service", "hook", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "cds_request_duration_seconds",
            "Time to answer a call",
            ["kind", "service", "hook"],
            buckets=BUCKETS,
            registry=r,
        )
        self.with_cards = Counter(
            "cds_calls_with_cards",
            "Hook calls answered with a card",
            ["service", "hook"],
            registry=r,
        )
        self.prefetch_keys = Counter(
            "cds_prefetch_keys", "Prefetch keys by how they were met", ["source"], registry=r
        )
        self.prefetch_seconds = Histogram(
            "cds_prefetch_seconds", "Time resolving prefetch", buckets=BUCKETS, registry=r
        )
        self.feedback = Counter(
            "cds_feedback",
            "Feedback items by rule, outcome and override reason",
            ["service", "rule", "outcome", "reason"],
            registry=r,
        )
        self.fetch_refusals = Counter(
            "cds_fetch_refusals",
            "FHIR fetches refused by the SSRF guard, by reason (no patient data, no host)",
            ["reason"],
            registry=r,
        )
        self.feedback_refused = Counter(
            "cds_feedback_refused",
            "Feedback items refused, by reason",
            ["service", "reason"],
            registry=r,
        )
        r.register(_CountsCollector(rules, score_cache, refusals))

    def render(self) -> bytes:
        return generate_latest(self.registry)
