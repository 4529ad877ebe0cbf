"""Prometheus metrics at `/metrics`: one registry per app (no import-time globals).

Counters updated on the request path (calls, durations, prefetch fetches, feedback) live here;
what other components already count (rule outcomes, score cache levels, JWT refusals) is read
from them when Prometheus scrapes, by a collector, so the hot path does no extra work for it.

Series (all prefixed `cds_`):
- `requests_total{kind,service,hook,status}`, `request_duration_seconds{kind,service,hook}`
- `calls_with_cards_total{service,hook}`: the card rate is this over `requests_total`
- `rule_evaluations_total{rule,status}` (fired, silent, skipped, error, timeout, shadow),
  `rule_cards_total{rule}`
- `prefetch_keys_total{source}` (prefetch, fetched, null, unavailable, …),
  `prefetch_seconds` (time spent resolving a call's prefetch)
- `score_cache_total{level,result}` (local/redis hit, miss), `score_cache_redis_errors_total`
- `feedback_total{service,outcome,reason}`
- `jwt_refusals_total{reason}`
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from cds_service.state import AppState

__all__ = ["Metrics"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    """Counts kept elsewhere, exported at scrape time."""

    def __init__(self, state: Callable[[], AppState | None]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        if state is None:
            return
        rules = CounterMetricFamily(
            "cds_rule_evaluations", "Rule evaluations by outcome", labels=["rule", "status"]
        )
        cards = CounterMetricFamily("cds_rule_cards", "Cards shown, by rule", labels=["rule"])
        if state.rules is not None:
            for rule, counts in sorted(state.rules.stats.counts.items()):
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
        if state.score_cache is not None:
            stats = state.score_cache.stats
            cache.add_metric(["local", "hit"], stats.local_hits)
            cache.add_metric(["redis", "hit"], stats.redis_hits)
            cache.add_metric(["any", "miss"], stats.misses)
            errors.add_metric([], stats.redis_errors)
        yield cache
        yield errors
        refusals = CounterMetricFamily(
            "cds_jwt_refusals", "Refused JWTs by reason", labels=["reason"]
        )
        for reason, value in sorted(state.auth_refusals.items()):
            refusals.add_metric([reason], value)
        yield refusals


class Metrics:
    """The app's metrics."""

    def __init__(self, state: Callable[[], AppState | None]) -> None:
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
            "Feedback items by outcome and override reason",
            ["service", "outcome", "reason"],
            registry=r,
        )
        r.register(_StateCollector(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)
