"""Audit action tags: ``actor:object:action``. One list, so the trail reads consistently."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    event_accepted = "worker:event:accepted"
    event_rejected = "worker:event:rejected"
    event_retracted = "worker:event:retracted"
    log_new_cluster = "worker:log:new_cluster"
    alert_raised = "worker:alert:raised"
    alert_evidence_added = "worker:alert:evidence_added"
    alert_marked_for_review = "worker:alert:marked_for_review"
    identity_merged = "worker:person:merged"
    identity_linked = "worker:person:linked_by_demographics"
    identity_possible_match = "worker:possible_match:recorded"
    identity_conflict = "worker:identity_conflict:recorded"
    identity_match_confirmed = "reviewer:possible_match:confirmed"
    identity_match_rejected = "reviewer:possible_match:rejected"
    identity_unlinked = "reviewer:person:unlinked"
    possible_matches_listed = "reviewer:possible_match:listed"
    household_read = "api:household:read"
    person_read = "api:person:read"
    token_issued = "api:token:issued"  # noqa: S105
    token_denied = "api:token:denied"  # noqa: S105
    alert_listed = "api:alert:listed"
    alert_read = "api:alert:read"
    request_denied = "api:request:denied"
    org_created = "operator:organisation:created"
    client_created = "operator:client:created"
