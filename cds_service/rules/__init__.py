"""The rule engine: YAML rules over FHIR, compiled once, evaluated per hook call."""
