"""Alerts: one per (rule, household, recipient) while open, with the events that support it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class AlertStatus(StrEnum):
    new = "new"
    acknowledged = "acknowledged"
    closed = "closed"


class Outcome(StrEnum):
    """How a recipient closed an alert (a fixed list; ``other`` needs a text)."""

    no_further_action = "no_further_action"
    referred_to_early_help = "referred_to_early_help"
    assessment_opened = "assessment_opened"
    strategy_discussion = "strategy_discussion"
    already_known = "already_known"
    other = "other"


class AssigneeKind(StrEnum):
    worker = "worker"
    team = "team"


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        # Suppression: at most one open alert per (rule, household, recipient).
        Index(
            "uq_alerts_open_rule_household_recipient",
            "rule_id",
            "household_id",
            "recipient_key",
            unique=True,
            postgresql_where=text("status <> 'closed'"),
        ),
        # What the closed alerts of a (rule, household, recipient) hold, read for every
        # batch's matches (migration 0009).
        Index(
            "ix_alerts_closed_rule_household_recipient",
            "rule_id",
            "household_id",
            "recipient_key",
            postgresql_where=text("status = 'closed'"),
        ),
        Index("ix_alerts_recipient_created", "recipient_org_id", "created_at", "id"),
        # The list's selective filters (GET /v1/alerts ?status= ?severity= ?rule= ?team=):
        # a page of a value few alerts have reads only those (migration 0007).
        Index(
            "ix_alerts_recipient_status_created", "recipient_org_id", "status", "created_at", "id"
        ),
        Index(
            "ix_alerts_recipient_severity_created",
            "recipient_org_id",
            "severity",
            "created_at",
            "id",
        ),
        Index(
            "ix_alerts_recipient_rule_created", "recipient_org_id", "rule_id", "created_at", "id"
        ),
        Index(
            "ix_alerts_recipient_team_created",
            "recipient_org_id",
            "assignee",
            "created_at",
            "id",
            postgresql_where=text("assignee_kind = 'team'"),
        ),
        # The gapless per-organisation sequence (NULL only for undeliverable alerts).
        Index("uq_alerts_recipient_sequence", "recipient_org_id", "sequence", unique=True),
        Index(
            "ix_alerts_urgent_unacknowledged",
            "created_at",
            postgresql_where=text(
                "severity = 'urgent' AND status = 'new' AND escalated_at IS NULL"
            ),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(100))
    rule_version: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    # Who should receive it, e.g. "children_services:E09000012"; the organisation is
    # resolved when the alert is raised. No organisation = undeliverable (kept, counted).
    recipient_key: Mapped[str] = mapped_column(String(100))
    recipient_org_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"))
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.new)
    summary: Mapped[str] = mapped_column(Text)
    children: Mapped[list[int]] = mapped_column(JSONB)
    explanation: Mapped[dict[str, Any]] = mapped_column(JSONB)
    trigger_event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    trigger_time: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    closed_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(40))
    # Set when a later fact (a retraction, an unlink) undermines the alert: never deleted.
    review_reason: Mapped[str | None] = mapped_column(Text)
    # Set when the retention policy purged its personal data (summary, children, explanation).
    purged_at: Mapped[datetime | None]
    # Assigned in commit order per recipient organisation (see ``OrgSequence``).
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_at: Mapped[datetime | None]
    assignee_kind: Mapped[str | None] = mapped_column(String(16))
    assignee: Mapped[str | None] = mapped_column(String(200))
    outcome_text: Mapped[str | None] = mapped_column(Text)
    # When the alert is due for review or expires (default period: a setting).
    review_by: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]


class AlertNote(Base):
    """A note a recipient's end user adds to an alert."""

    __tablename__ = "alert_notes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alerts.id"), index=True)
    author: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class OrgSequence(Base):
    """Per-organisation counters: the last alert sequence and the last alert-event sequence.

    Taken with ``INSERT .. ON CONFLICT DO UPDATE SET last = last + n RETURNING`` in the
    transaction that writes the alerts/events: the row lock is held until commit, so a
    second writer for the same organisation waits, and numbers become visible in commit
    order with no gaps (a rolled-back transaction rolls its increment back too). This
    serialises alert creation *per organisation* only, which is cheap next to the
    per-household locks the pipeline already takes; writers lock counters last, in
    organisation-id order, so they never deadlock."""

    __tablename__ = "org_sequences"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    alert_last: Mapped[int] = mapped_column(BigInteger, default=0)
    event_last: Mapped[int] = mapped_column(BigInteger, default=0)


class AlertEvidence(Base):
    """An event that made one of the alert's conditions true (the trigger and later matches)."""

    __tablename__ = "alert_evidence"
    # The alerts an event is evidence of (a retraction, a falsifying fact; migration 0009).
    __table_args__ = (Index("ix_alert_evidence_event_id", "event_id"),)

    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alerts.id"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The children the event named for this alert when last evaluated ([]: it no longer
    # matches; NULL: written before migration 0010, unknown). Purged with the alert's.
    children: Mapped[list[int] | None] = mapped_column(JSONB)
