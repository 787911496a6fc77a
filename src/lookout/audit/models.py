"""The audit trail: one append-only row per recorded action, internal ids only; the
sealer's hash chain over it (``audit_seals``) and its signed checkpoints.

All three tables refuse UPDATE, DELETE and TRUNCATE in the database (triggers, migration
0002), not only in code."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, FetchedValue, Identity, Index, LargeBinary, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from lookout.db import Base


class XID8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (``pg_current_xact_id()``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


class AuditRecord(Base):
    """Who (organisation, client, end user), what (``subject:object:action`` tag and
    object id), when, why (purpose of use), outcome, and the request id.

    ``seq`` and ``xid`` are set by a BEFORE INSERT trigger in the writing transaction:
    first the transaction's xid, then ``nextval('audit_records_seq')`` (whatever the
    INSERT says). Never holds identifiers such as NHS numbers, payloads or clinical
    detail, so purging personal data never touches it."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_object", "object_type", "object_id"),)

    seq: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False, server_default=FetchedValue()
    )
    at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    actor_org_id: Mapped[str | None] = mapped_column(String(64), index=True)
    actor_client_id: Mapped[str | None] = mapped_column(String(64))
    end_user: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(80), index=True)
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(80))
    purpose: Mapped[str | None] = mapped_column(String(80))
    outcome: Mapped[str] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    xid: Mapped[int | None] = mapped_column(XID8(), server_default=FetchedValue())


class AuditSeal(Base):
    """The hash chain: ``hash`` of record ``seq`` covers its canonical form and the hash of
    the previous sealed record (see :mod:`lookout.audit.chain`). Written by the sealer only."""

    __tablename__ = "audit_seals"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    sealed_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditCheckpoint(Base):
    """(seq, head hash) signed with the sealer's Ed25519 key; also written to a file."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    head_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_at: Mapped[datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
