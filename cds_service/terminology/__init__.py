"""One terminology: the value sets rules, risk scores and the SMART view read codes from.

    from cds_service.terminology import LOINC, RXNORM, value_set

    hba1c = value_set("hba1c")
    hba1c.contains(LOINC, "4549-2")  # True
    value_set("heart-failure").contains("http://hl7.org/fhir/sid/icd-10-cm", "I50.9")  # is-a I50
    value_set("oral-anticoagulants").contains(RXNORM, "1364447")  # apixaban 5 MG … [Eliquis]

The files live in `rules/_valuesets/` (see `valueset.py` for what a file may say); the rules of a
rules directory read that directory's own value sets through `cds_service.rules.valuesets`.
RxNorm ingredient entries take the clinical drugs the ingredient map (`ingredients.py`,
`rules/_terminology/`) gives them; `medications.py` finds the drug of a medication resource
(`medicationCodeableConcept`, or the Medication its `medicationReference` points to).
"""

from __future__ import annotations

from cds_service.terminology.ingredients import (
    Drug,
    IngredientMap,
    bundled_ingredient_map,
    ingredient_map_for,
)
from cds_service.terminology.medications import (
    MEDICATION_TYPES,
    DrugOf,
    drug_of,
    medication_key,
    medications_by_reference,
)
from cds_service.terminology.registry import (
    VALUESETS_DIR,
    bundled_directory,
    bundled_value_sets,
    value_set,
)
from cds_service.terminology.systems import ICD10_SYSTEMS, LOINC, RXNORM, SNOMED
from cds_service.terminology.valueset import (
    INGREDIENT_DRUGS_URL,
    INGREDIENT_NAME_URL,
    ValueSet,
    coded,
    codings_of,
    load_value_sets,
    words,
)

__all__ = [
    "ICD10_SYSTEMS",
    "INGREDIENT_DRUGS_URL",
    "INGREDIENT_NAME_URL",
    "LOINC",
    "MEDICATION_TYPES",
    "RXNORM",
    "SNOMED",
    "VALUESETS_DIR",
    "Drug",
    "DrugOf",
    "IngredientMap",
    "ValueSet",
    "bundled_directory",
    "bundled_ingredient_map",
    "bundled_value_sets",
    "coded",
    "codings_of",
    "drug_of",
    "ingredient_map_for",
    "load_value_sets",
    "medication_key",
    "medications_by_reference",
    "value_set",
    "words",
]
