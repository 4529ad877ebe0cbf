"""Code system URIs the service reads codes in."""

from __future__ import annotations

__all__ = ["ICD10_SYSTEMS", "LOINC", "RXNORM", "SNOMED"]

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
# ICD-10-CM (US) and WHO ICD-10: their hierarchy is their codes' prefixes ("I50" > "I50.9").
ICD10_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"})
