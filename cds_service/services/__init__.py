"""CDS services: definitions, the registry that discovery and dispatch read, built-in services."""
