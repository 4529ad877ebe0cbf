"""The audit trail: one database row per hook call, feedback call and discovery request."""

from cds_service.audit.store import AuditEntry, AuditKind, AuditStore

__all__ = ["AuditEntry", "AuditKind", "AuditStore"]
