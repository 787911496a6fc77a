"""Audit action tags: ``actor:object:action``. One list, so the trail reads consistently."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    event_accepted = "worker:event:accepted"
    event_rejected = "worker:event:rejected"
    event_retracted = "worker:event:retracted"
    log_new_cluster = "worker:log:new_cluster"
    partition_stopped = "worker:partition:stopped"
    partition_resumed = "worker:partition:resumed"
    offset_moved = "operator:partition:offset_moved"
    alert_raised = "worker:alert:raised"
    alert_evidence_added = "worker:alert:evidence_added"
    alert_marked_for_review = "worker:alert:marked_for_review"
    token_issued = "api:token:issued"  # noqa: S105
    token_denied = "api:token:denied"  # noqa: S105
    alert_listed = "api:alert:listed"
    alert_read = "api:alert:read"
    request_denied = "api:request:denied"
    rules_applied = "operator:rule_set:applied"
    org_created = "operator:organisation:created"
    client_created = "operator:client:created"
    audit_listed = "api:audit:listed"
    audit_access_report = "api:audit:access_report"
    audit_exported = "api:audit:exported"
    audit_verified = "api:audit:verified"
    audit_verified_cli = "operator:audit:verified"
    retention_events_purged = "retention:event:purged"
    retention_alerts_purged = "retention:alert:purged"
    retention_rejections_purged = "retention:rejection:purged"
    client_rotated = "operator:client:rotated"
    alert_acknowledged = "api:alert:acknowledged"
    alert_assigned = "api:alert:assigned"
    alert_closed = "api:alert:closed"
    alert_note_added = "api:alert:note_added"
    alert_escalated = "dispatcher:alert:escalated"
    alert_stream_opened = "api:alert:stream_opened"
    subscription_created = "api:subscription:created"
    subscription_deleted = "api:subscription:deleted"
    subscription_read = "api:subscription:read"
    subscription_disabled = "dispatcher:subscription:disabled"
    rejection_listed = "api:rejection:listed"
    rejection_replayed = "operator:rejection:replayed"
    undeliverable_listed = "operator:alert:undeliverable_listed"
    event_published = "api:event:published"
