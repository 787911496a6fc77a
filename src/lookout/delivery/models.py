"""The alert-event outbox, webhook subscriptions, their messages and every delivery attempt."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class EventType(StrEnum):
    created = "alert.created"
    updated = "alert.updated"
    escalated = "alert.escalated"


class AlertEvent(Base):
    """One change to an alert, for its recipient organisation: the outbox.

    Written in the same transaction as the change, numbered gaplessly per organisation
    (``OrgSequence.event_last``) so the SSE stream can resume from ``Last-Event-ID`` and
    the dispatcher can fan out to webhooks without missing one. Holds ids only."""

    __tablename__ = "alert_events"

    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alerts.id"), index=True)
    alert_sequence: Mapped[int] = mapped_column(BigInteger)
    # What changed, e.g. {"change": "status", "status": "acknowledged"}; no personal data.
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Subscription(Base):
    """A webhook endpoint of an organisation.

    The signing secret is kept as given out (``whsec_<base64>``): HMAC needs it to sign,
    so unlike client secrets it cannot be stored as a one-way hash. ``cursor`` is the last
    alert-event sequence of the organisation already fanned out to this subscription."""

    __tablename__ = "subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(200))
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(40))
    deleted_at: Mapped[datetime | None]


class MessageStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class WebhookMessage(Base):
    """One alert event to deliver to one subscription (its id is the ``webhook-id``)."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        Index(
            "uq_webhook_messages_subscription_event",
            "subscription_id",
            "event_sequence",
            unique=True,
        ),
        Index(
            "ix_webhook_messages_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    org_id: Mapped[str] = mapped_column(String(64))
    event_sequence: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=MessageStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    delivered_at: Mapped[datetime | None]


class WebhookAttempt(Base):
    """Every delivery attempt, kept and listable by the subscriber."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_subscription_at", "subscription_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_messages.id"))
    subscription_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subscriptions.id"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    outcome: Mapped[str] = mapped_column(String(24))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
