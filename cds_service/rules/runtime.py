"""The serving rule set: loaded at start-up, reloaded when files change, never replaced by a
broken one.

A change under the rules directory takes effect without a restart. The new set is loaded and
checked in full first; when any file has an error, the last good set keeps serving and the errors
are logged, and `/readyz` names the first (`file:line:col: field: message`) and counts them until
a reload succeeds. So does a reload that fails for any other reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from cds_service.exceptions import ConfigurationError
from cds_service.issues import RuleIssue, sorted_issues
from cds_service.rules.ruleset import RuleSet, load_ruleset, rule_files
from cds_service.rules.service import RuleStats, services_from_rules
from cds_service.scores.sources import ScoreSource
from cds_service.services.definition import ServiceDefinition
from cds_service.services.registry import ServiceRegistry

__all__ = ["RuleRuntime", "known_score_names"]

log = logging.getLogger(__name__)


def known_score_names() -> list[str]:
    """The risk scores rules may declare."""
    from cds_service.scores import score_names

    return list(score_names())


def _keep_last_good(new: RuleSet, old: RuleSet, errors: Sequence[RuleIssue]) -> RuleSet | None:
    """The new set with each rule whose file now has errors at its last good version (so one
    broken file holds back no other file's edits); None when an error is outside the rule files
    (the services file, a value set), where nothing can be taken file by file."""
    broken = {issue.path for issue in errors}
    files = set(rule_files(new.root))
    if not broken <= files:
        return None
    rules = dict(new.rules)
    for rule_id, rule in old.rules.items():
        if rule.path in broken and rule_id not in rules and rule.rule.service in new.services:
            rules[rule_id] = rule
    return dataclasses.replace(new, rules=rules)


def _signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    entries = []
    if root.is_dir():
        for path in root.rglob("*"):
            if path.is_file() and not any(p.startswith(".") for p in path.relative_to(root).parts):
                stat = path.stat()
                entries.append((str(path.relative_to(root)), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(entries))


class RuleRuntime:
    """Owns the live RuleSet and builds the service registry from it."""

    def __init__(
        self,
        root: Path,
        *,
        extra_services: Callable[[], list[ServiceDefinition]],
        budget_seconds: float,
        scores: ScoreSource,
    ) -> None:
        self.root = root
        self.extra_services = extra_services
        self.budget_seconds = budget_seconds
        self.scores = scores
        self.stats = RuleStats()
        self.ruleset: RuleSet | None = None
        self.problem: str | None = None
        self._signature: tuple[tuple[str, int, int], ...] = ()

    def build(self, ruleset: RuleSet) -> ServiceRegistry:
        """The registry for a rule set plus the extra (built-in) services."""
        services = services_from_rules(
            ruleset,
            scores=self.scores,
            stats=self.stats,
            budget_seconds=self.budget_seconds,
        )
        return ServiceRegistry([*services, *self.extra_services()])

    def load(self) -> ServiceRegistry | None:
        """Load the directory; return a new registry, or None when the last good set stays.

        At start-up (no set yet) a set with errors still serves its good rules: refusing to start
        would take every service down for one bad file.
        """
        self._signature = _signature(self.root)
        ruleset = load_ruleset(self.root, known_score_names())
        errors = sorted_issues(ruleset.errors)
        for issue in ruleset.issues:
            (log.error if issue.severity == "error" else log.warning)("rules: %s", issue)
        if errors and self.ruleset is not None:
            merged = _keep_last_good(ruleset, self.ruleset, errors)
            if merged is None:  # the services or value sets: nothing can be taken alone
                self.problem = f"{self._errors(errors)}; the last good set keeps serving"
                return None
            ruleset, problem = (
                merged,
                (
                    f"{self._errors(errors)}; the other files' edits apply, and each broken rule "
                    "serves its last good version"
                ),
            )
            try:
                registry = self.build(ruleset)
            except ConfigurationError as exc:
                self.problem = f"{exc.message}; the last good set keeps serving"
                log.error("rules: %s", exc.message)
                return None
            self.ruleset, self.problem = ruleset, problem
            log.info(
                "rules: %d rules loaded, broken files at their last good version",
                len(ruleset.rules),
            )
            return registry
        try:
            registry = self.build(ruleset)
        except ConfigurationError as exc:
            self.problem = exc.message
            log.error("rules: %s", exc.message)
            if self.ruleset is None:
                raise
            return None
        self.ruleset = ruleset
        self.problem = self._errors(errors) if errors else None
        log.info("rules: %d rules in %d services loaded", len(ruleset.rules), len(registry))
        return registry

    def _errors(self, errors: Sequence[RuleIssue]) -> str:
        """How many errors, and the first with its place (the path under the rules directory)."""
        first = errors[0]
        if first.path.is_relative_to(self.root):
            first = dataclasses.replace(first, path=first.path.relative_to(self.root))
        return f"{len(errors)} error(s) in the rules directory, the first {first}"

    def changed(self) -> bool:
        """True when any file under the directory was added, removed or modified."""
        return _signature(self.root) != self._signature

    async def watch(self, interval: float, swap: Callable[[ServiceRegistry], None]) -> None:
        """Poll for changes and swap in each good new registry (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            try:
                if self.changed():
                    registry = await asyncio.to_thread(self.load)
                    if registry is not None:
                        swap(registry)
            except Exception as exc:  # the watcher must outlive any surprise
                log.error("rules reload failed: %s", type(exc).__name__)
                self.problem = (
                    f"rules reload failed ({type(exc).__name__}); the last good set keeps serving"
                )
