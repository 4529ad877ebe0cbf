"""SMART on FHIR app launch and the clinician's risk view."""
