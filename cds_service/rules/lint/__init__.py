"""Linting rules: named, suppressible checks beyond the load errors (pySigma's validators).

- `base`: the `Validator` class (an `id`, a `severity`, a `description`; `validate`,
  `validate_tests`, `finalize`);
- `coverage`, `layout`: the validators, grouped by what they look at;
- `registry`: every validator `rules lint` runs;
- `config`: `rules/lint.yaml`, which switches validators off or excludes rules from them;
- `run`: `lint_rules`, behind `cds-service rules lint`.
"""

from __future__ import annotations

from cds_service.rules.lint.base import Validator
from cds_service.rules.lint.config import LintConfig, read_lint_config
from cds_service.rules.lint.registry import VALIDATORS, validator_ids
from cds_service.rules.lint.run import LintReport, lint_rules

__all__ = [
    "VALIDATORS",
    "LintConfig",
    "LintReport",
    "Validator",
    "lint_rules",
    "read_lint_config",
    "validator_ids",
]
