"""cds-service: a spec-exact CDS Hooks 2.0 decision-support service."""

__version__ = "0.1.0"
