"""Organisations (agencies, children's services, schools, operators, auditors) and their clients."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class OrgKind(StrEnum):
    agency = "agency"
    children_services = "children_services"
    school = "school"
    operator = "operator"
    auditor = "auditor"


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    la_code: Mapped[str | None] = mapped_column(String(9), index=True)
    source: Mapped[str | None] = mapped_column(String(255), unique=True)
    school_urn: Mapped[str | None] = mapped_column(String(6), unique=True)
    # Urgent alerts not acknowledged within this many seconds are escalated;
    # NULL means the default (LOOKOUT_ESCALATE_AFTER_S).
    escalate_after_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Client(Base):
    """A machine client of an organisation (OAuth2 client credentials).

    Only a hash of the secret is kept."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    disabled_at: Mapped[datetime | None]
