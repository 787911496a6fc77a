"""Persons and the identifiers that link them across agencies."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base

_LIVE = text("merged_into IS NULL")
_LIVE_WITHOUT_NHS = text("merged_into IS NULL AND NOT has_nhs_number")
_BLOCKS = {
    "birth_date": ("birth_date",),
    "soundex_year": ("family_soundex", "birth_year"),
    "district_soundex": ("postcode_district", "family_soundex"),
}


class Person(Base):
    """A person. Demographics are filled in when first seen (never overwritten); their
    normalised forms and blocking keys (see :mod:`lookout.identity.scoring`) are indexed
    for candidate search. A merged person keeps its row with ``merged_into`` set."""

    __tablename__ = "persons"
    __table_args__ = tuple(
        Index(f"ix_persons_block_{name}{suffix}", *columns, postgresql_where=where)
        for name, columns in _BLOCKS.items()
        for suffix, where in (("", _LIVE), ("_without_nhs", _LIVE_WITHOUT_NHS))
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    birth_date: Mapped[date | None] = mapped_column(Date)
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    postcode: Mapped[str | None] = mapped_column(String(10))
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    norm_given_name: Mapped[str | None] = mapped_column(String(100))
    norm_family_name: Mapped[str | None] = mapped_column(String(100))
    norm_postcode: Mapped[str | None] = mapped_column(String(8))
    family_soundex: Mapped[str | None] = mapped_column(String(4))
    birth_year: Mapped[int | None] = mapped_column(SmallInteger)
    postcode_district: Mapped[str | None] = mapped_column(String(4))
    given_initial: Mapped[str | None] = mapped_column(String(1))
    # Kept by a trigger on person_identifiers (migration 0008), never written here.
    has_nhs_number: Mapped[bool] = mapped_column(server_default=false())


class PersonIdentifier(Base):
    """One strong identifier of a person. Agency-local ids are namespaced by the
    issuing organisation (``value`` = ``<org id>:<local id>``)."""

    __tablename__ = "person_identifiers"

    scheme: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class MatchKind(StrEnum):
    demographic = "demographic"  # a score in the possible-match band
    conflict = "conflict"  # strong identifiers that cannot belong to one person


class MatchStatus(StrEnum):
    open = "open"
    confirmed = "confirmed"
    rejected = "rejected"


class PossibleMatch(Base):
    """Two persons who may be one, waiting for a person to decide. ``evidence`` holds
    agreement levels, identifier schemes and internal ids only, never values."""

    __tablename__ = "possible_matches"
    __table_args__ = (
        Index(
            "uq_possible_matches_open_pair",
            "person_id",
            "other_person_id",
            unique=True,
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_possible_matches_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    other_person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    score: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), default=MatchStatus.open)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    merge_id: Mapped[int | None] = mapped_column(ForeignKey("identity_merges.id"))


class IdentityMerge(Base):
    """``merged_id`` was found to be ``survivor_id``: its identifiers and events were moved
    to the survivor (listed here, so that an unlink can move them back)."""

    __tablename__ = "identity_merges"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    merged_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    score: Mapped[float | None] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB)
    moved_identifiers: Mapped[list[list[str]]] = mapped_column(JSONB)
    moved_events: Mapped[list[int]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    undone_at: Mapped[datetime | None]
