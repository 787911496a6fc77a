"""Subscriptions, deliveries and stream events as the API shows them."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import AnyHttpUrl, BaseModel, Field


class SubscriptionIn(BaseModel):
    url: AnyHttpUrl = Field(description="Where to POST webhooks (https in production)")


class SubscriptionOut(BaseModel):
    id: uuid.UUID
    url: str
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = Field(
        default=None, description="`exhausted` (every retry failed) or `gone` (the URL said 410)"
    )


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(
        description="The signing secret (`whsec_<base64>`), shown once: keep it safe"
    )


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    id: int
    message_id: str = Field(description="The `webhook-id` header (the same on every retry)")
    event_sequence: int
    attempt: int
    at: datetime
    outcome: str = Field(description="delivered, retry, failed, gone or refused")
    status_code: int | None = None
    error: str | None = None
    duration_ms: int | None = None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_before: int | None = Field(description="Pass as `before` for older attempts")


class AlertEventOut(BaseModel):
    """The thin payload of a webhook and of an SSE event: fetch the alert through the API."""

    type: str = Field(description="alert.created, alert.updated or alert.escalated")
    sequence: int = Field(description="Gapless per-organisation event number (SSE id)")
    alert_id: uuid.UUID
    alert_sequence: int = Field(description="The alert's own gapless sequence number")
    timestamp: datetime
