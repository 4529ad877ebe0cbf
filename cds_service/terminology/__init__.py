"""One terminology: the value sets rules, risk scores and the SMART view read codes from.

    from cds_service.terminology import LOINC, value_set

    hba1c = value_set("hba1c")
    hba1c.contains(LOINC, "4549-2")  # True
    value_set("heart-failure").contains("http://hl7.org/fhir/sid/icd-10-cm", "I50.9")  # is-a I50

The files live in `rules/_valuesets/` (see `valueset.py` for what a file may say); the rules of a
rules directory read that directory's own value sets through `cds_service.rules.valuesets`.
"""

from __future__ import annotations

from cds_service.terminology.registry import (
    VALUESETS_DIR,
    bundled_directory,
    bundled_value_sets,
    value_set,
)
from cds_service.terminology.systems import ICD10_SYSTEMS, LOINC, RXNORM, SNOMED
from cds_service.terminology.valueset import (
    INGREDIENT_NAME_URL,
    ValueSet,
    coded,
    codings_of,
    load_value_sets,
    words,
)

__all__ = [
    "ICD10_SYSTEMS",
    "INGREDIENT_NAME_URL",
    "LOINC",
    "RXNORM",
    "SNOMED",
    "VALUESETS_DIR",
    "ValueSet",
    "bundled_directory",
    "bundled_value_sets",
    "coded",
    "codings_of",
    "load_value_sets",
    "value_set",
    "words",
]
