"""Every validator `rules lint` knows, in the order their ids are listed."""

from __future__ import annotations

from cds_service.rules.lint.base import Validator
from cds_service.rules.lint.case_codes import CodeOutsideValueSet, UnnamedUnknownCode
from cds_service.rules.lint.coverage import MissingFiringCase, MissingSilentCase, RuleWithoutTests
from cds_service.rules.lint.fhir_model import FhirModel
from cds_service.rules.lint.layout import RuleOutsideHookDirectory

__all__ = ["VALIDATORS", "validator_ids"]

VALIDATORS: tuple[type[Validator], ...] = (
    FhirModel,
    MissingFiringCase,
    MissingSilentCase,
    RuleOutsideHookDirectory,
    RuleWithoutTests,
    CodeOutsideValueSet,
    UnnamedUnknownCode,
)


def validator_ids(validators: tuple[type[Validator], ...] = VALIDATORS) -> list[str]:
    """The ids of `validators`, in order."""
    return [v.id for v in validators]
