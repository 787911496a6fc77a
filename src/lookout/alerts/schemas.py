"""The alert as the API shows it to its recipient."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from lookout.alerts.models import AssigneeKind, Outcome


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
    sequence: int | None = Field(
        default=None,
        description="Gapless per-organisation number in commit order (see `after_sequence`)",
    )
    acknowledged_at: datetime | None = None
    assignee_kind: AssigneeKind | None = None
    assignee: str | None = None
    closed_at: datetime | None = None
    outcome: Outcome | None = None
    outcome_text: str | None = None
    review_by: datetime | None = Field(
        default=None, description="When the alert is due for review (its expiry date)"
    )
    escalated_at: datetime | None = Field(
        default=None, description="Set when an urgent alert was not acknowledged in time"
    )


class EvidenceOut(BaseModel):
    event_id: int
    role: str
    added_at: datetime


class NoteOut(BaseModel):
    id: int
    author: str = Field(description="The end user who wrote it (X-Lookout-End-User)")
    text: str
    created_at: datetime


class AlertDetail(AlertOut):
    explanation: dict[str, Any] = Field(
        description="Each condition, its result and the facts that made it true"
    )
    evidence: list[EvidenceOut]
    notes: list[NoteOut] = Field(default_factory=list)


class AssignIn(BaseModel):
    kind: AssigneeKind = Field(description="A named worker or a team of your organisation")
    name: str = Field(min_length=1, max_length=200, description="Your system's id for them")


class CloseIn(BaseModel):
    outcome: Outcome
    text: str | None = Field(
        default=None, max_length=2000, description="Required when the outcome is `other`"
    )


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)


class UndeliverableOut(BaseModel):
    id: uuid.UUID
    rule_id: str
    severity: str
    recipient_key: str = Field(
        description="Who should have received it, e.g. children_services:E09000012"
    )
    household_id: int
    created_at: datetime


class UndeliverablePage(BaseModel):
    items: list[UndeliverableOut]


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end "
        "(and always null when reading by `after_sequence`: pass the last item's sequence)"
    )
