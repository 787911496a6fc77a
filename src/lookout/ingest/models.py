"""What the worker keeps of each message: accepted events, rejections, and consumer offsets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class Event(Base):
    """An accepted event. (source, event_id, content_hash) is kept for ever so dedupe
    survives retention; ``data`` (personal data) is purged under the retention policy."""

    __tablename__ = "events"
    __table_args__ = (
        Index("uq_events_source_event_id", "source", "event_id", unique=True),
        Index("ix_events_subject_time", "subject_person_id", "event_time"),
        # Every batch asks whether a retraction of its events arrived first: without this
        # (small, partial) index that is a scan of the whole, ever-growing events table.
        Index(
            "ix_events_retracts",
            "source",
            text("(facts ->> 'retracts')"),
            postgresql_where=text("type = 'uk.lookout.event.retraction.v1'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(120))
    event_time: Mapped[datetime]
    subject_ref: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    subject_person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    retracted_by: Mapped[int | None] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = mapped_column(server_default=func.now())
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)


class Rejection(Base):
    """An invalid message, recorded exactly once in the batch transaction. The DLQ topic
    copy is at-least-once: ``dlq_published_at`` is set after the copy is acknowledged."""

    __tablename__ = "rejections"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(255), index=True)
    event_id: Mapped[str | None] = mapped_column(String(200))
    event_type: Mapped[str | None] = mapped_column(String(120))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    kafka_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    kafka_topic: Mapped[str] = mapped_column(String(255))
    kafka_partition: Mapped[int] = mapped_column(Integer)
    kafka_offset: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    dlq_published_at: Mapped[datetime | None]
    # Set when the retention policy purged ``raw``, ``kafka_key`` and ``detail``.
    purged_at: Mapped[datetime | None]


class ConsumerOffset(Base):
    """The worker's position in each partition, committed with the batch's effects.

    ``cluster_id`` ties the offset to one broker log: a new cluster is a new log."""

    __tablename__ = "consumer_offsets"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[str] = mapped_column(String(200))
    next_offset: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
