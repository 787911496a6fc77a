"""Alerts: one per (rule, household, recipient) while open, with the events that support it."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class AlertStatus(StrEnum):
    new = "new"
    acknowledged = "acknowledged"
    closed = "closed"


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
        Index("ix_alerts_recipient_created", "recipient_org_id", "created_at", "id"),
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


class AlertEvidence(Base):
    """An event that made one of the alert's conditions true (the trigger and later matches)."""

    __tablename__ = "alert_evidence"

    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alerts.id"), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    added_at: Mapped[datetime] = mapped_column(server_default=func.now())
