"""Households and persons as the read API shows them to practitioners."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class FlagOut(BaseModel):
    kind: str = Field(description="child_protection_plan or looked_after")
    la_code: str = Field(description="The local authority that holds it")
    since: date | None


class RelationOut(BaseModel):
    person_id: int
    relationship: str = Field(
        description="What the other member is to this one: parent, child, carer, cared_for, partner"
    )


class MemberOut(BaseModel):
    person_id: int
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    age: int | None = Field(description="Whole years on as_of; null if the birth date is unknown")
    role: str = Field(description="child (under 18), adult, or unknown_age")
    joined: date | None = Field(description="The date the member moved in, if known")
    flags: list[FlagOut]
    school_urn: str | None
    relationships: list[RelationOut]


class PeriodOut(BaseModel):
    alert_id: str
    start: date
    end: date


class HouseholdOut(BaseModel):
    id: int
    uprn: str
    la_code: str
    as_of: date
    members: list[MemberOut]
    readable_period: PeriodOut = Field(
        description="The alert whose period allows this read, and that period"
    )
    partial: bool = Field(
        description="True when only part of the household is shown (a school sees its pupils)"
    )


class PersonOut(BaseModel):
    id: int
    as_of: date
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    postcode: str | None
    age: int | None
    household_ids: list[int] = Field(description="Households the person lived in on as_of")
    flags: list[FlagOut]
    school_urn: str | None
    readable_period: PeriodOut
