"""The temporal household graph: addresses (households), residences, relationships, flags.

Validity periods are dates: ``valid_from`` inclusive, ``valid_to`` exclusive (the first
day the fact no longer holds); ``None`` means open-ended.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from lookout.db import Base


class Household(Base):
    """A dwelling: identified by (UPRN, local authority ONS code)."""

    __tablename__ = "households"
    __table_args__ = (Index("uq_households_uprn_la", "uprn", "la_code", unique=True),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    uprn: Mapped[str] = mapped_column(String(12))
    la_code: Mapped[str] = mapped_column(String(9))


class Residence(Base):
    """A person living at a household for a period; derived from the person's residence events."""

    __tablename__ = "residences"
    __table_args__ = (Index("ix_residences_household_period", "household_id", "valid_from"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class Relationship(Base):
    """Person A is the parent / carer / partner of person B for a period."""

    __tablename__ = "relationships"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    related_person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))


class Flag(Base):
    """A period during which a child is on a protection plan or looked after, held by an LA."""

    __tablename__ = "flags"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    la_code: Mapped[str] = mapped_column(String(9))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)


class Enrolment(Base):
    """A child on a school's roll for a period; derived from the child's enrolment events."""

    __tablename__ = "enrolments"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    school_urn: Mapped[str] = mapped_column(String(6), index=True)
    dsl_org_id: Mapped[str | None] = mapped_column(String(200))
    valid_from: Mapped[date | None] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)
