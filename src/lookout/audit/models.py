"""The audit trail: one append-only row per recorded action, internal ids only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Identity, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class AuditRecord(Base):
    """Who (organisation, client), what (``subject:object:action`` tag and object id),
    when, why (purpose of use), outcome, and the request id. ``seq`` is assigned in the
    writing transaction. Never holds identifiers such as NHS numbers, payloads or
    clinical detail, so purging personal data never touches it."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now())
    actor_org_id: Mapped[str | None] = mapped_column(String(64))
    actor_client_id: Mapped[str | None] = mapped_column(String(64))
    end_user: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80), index=True)
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(80))
    purpose: Mapped[str | None] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
