"""The alert as the API shows it to its recipient."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AlertOut(BaseModel):
    id: uuid.UUID
    rule_id: str
    rule_version: str = Field(description="SHA-256 of the rule file's normalised content")
    severity: str
    status: str
    household_id: int
    children: list[int] = Field(description="Lookout person ids of the children concerned")
    summary: str
    trigger_time: datetime
    created_at: datetime
    updated_at: datetime
    review_reason: str | None = Field(
        default=None, description="Set when a later fact (e.g. a retraction) undermines the alert"
    )


class EvidenceOut(BaseModel):
    event_id: int
    role: str
    added_at: datetime


class AlertDetail(AlertOut):
    explanation: dict[str, Any] = Field(
        description="Each condition, its result and the facts that made it true"
    )
    evidence: list[EvidenceOut]


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end"
    )
