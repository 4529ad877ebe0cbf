"""Feedback persistence: the durable, idempotent store for CDS Hooks feedback."""
