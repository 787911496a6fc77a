"""The audit trail as the API shows it to auditors."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditRecordOut(BaseModel):
    seq: int = Field(description="Position in the trail (gaps are rolled-back transactions)")
    at: datetime
    actor_org_id: str | None
    actor_client_id: str | None
    end_user: str | None
    action: str = Field(description="A `subject:object:action` tag, e.g. `api:alert:read`")
    object_type: str | None
    object_id: str | None
    purpose: str | None
    outcome: str
    request_id: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditRecordOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


class AlertAboutPerson(BaseModel):
    id: uuid.UUID
    rule_id: str
    recipient_org_id: str | None
    status: str
    created_at: datetime


class Access(BaseModel):
    seq: int
    at: datetime
    action: str
    alert_id: str | None = Field(description="The alert read or acted on; null for a list")
    alert_ids: list[str] = Field(description="The person's alerts this record covers")
    actor_org_id: str | None
    actor_client_id: str | None
    end_user: str | None
    purpose: str | None
    outcome: str
    request_id: str | None


class AccessReport(BaseModel):
    """Who has seen this person's information: the alerts naming them, and every audited
    read, list or action on those alerts."""

    person_id: int
    alerts: list[AlertAboutPerson]
    accesses: list[Access]
    truncated: bool = Field(description="More accesses exist than the report limit")


class VerifyOut(BaseModel):
    ok: bool
    records_checked: int
    sealed_through: int = Field(description="The last sealed record")
    unsealed: int = Field(description="Records the sealer has not chained yet")
    checkpoints_checked: int
    first_bad_seq: int | None = Field(description="The first record that fails, if any")
    bad_checkpoint_seq: int | None
    problem: str | None
