"""Possible matches, decisions and unlinks as the identity API shows them."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class PersonSummary(BaseModel):
    """What a reviewer needs to decide: the demographics each person holds."""

    id: int
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    postcode: str | None
    identifier_schemes: list[str] = Field(description="Schemes held (values are not shown)")


class PossibleMatchOut(BaseModel):
    id: int
    kind: str = Field(description="demographic (a score in the review band) or conflict")
    person_id: int
    other_person_id: int
    score: float | None = Field(description="Sum of log2 match weights (demographic only)")
    evidence: dict[str, Any] = Field(description="Agreement levels or conflicting schemes")
    status: str
    created_at: datetime
    persons: list[PersonSummary]


class PossibleMatchPage(BaseModel):
    items: list[PossibleMatchOut]
    next_after_id: int | None = Field(description="Pass as after_id for the next page")


class DecisionOut(BaseModel):
    match_id: int
    status: str
    survivor_id: int | None = None
    merge_id: int | None = None
    alerts_raised: int = 0


class UnlinkIn(BaseModel):
    merged_person_id: int | None = Field(
        default=None,
        description="The person merged into this one to restore; default: the newest merge",
    )


class UnlinkOut(BaseModel):
    merge_id: int
    person_id: int
    restored_person_id: int
    moved_identifiers: int
    moved_events: int
    alerts_marked_for_review: list[str]
