"""Identity resolution: map each person reference in a batch to one Lookout person.

Strong identifiers link deterministically: NHS number and UPN are national; agency-local
ids (``la_person_id``, ``police_person_id``) are namespaced by the publishing organisation.
A reference with no strong identifier makes a new person (probabilistic matching on
demographics is the identity stage's next step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.identity import repository

NATIONAL = ("nhs_number", "upn")
LOCAL = ("la_person_id", "police_person_id")


@dataclass(frozen=True, slots=True)
class PersonRef:
    """One person as an event names them, with the publishing organisation for namespacing."""

    org_id: str
    person: Mapping[str, Any]

    def identifier_keys(self) -> list[repository.Key]:
        keys = [(s, str(self.person[s])) for s in NATIONAL if s in self.person]
        keys += [(s, f"{self.org_id}:{self.person[s]}") for s in LOCAL if s in self.person]
        return keys

    def birth_date(self) -> date | None:
        value = self.person.get("birth_date")
        return date.fromisoformat(value) if isinstance(value, str) else None


async def resolve(session: AsyncSession, refs: Sequence[PersonRef]) -> list[int]:
    """The person id of each reference, creating persons and linking identifiers as needed."""
    in_db = await repository.owners(session, (k for ref in refs for k in ref.identifier_keys()))
    known = dict(in_db)
    chosen: list[int] = []  # a person id, or -n for the n-th person to create
    creating = 0
    for ref in refs:
        holders = {known[k] for k in ref.identifier_keys() if k in known}
        existing = [h for h in holders if h > 0]
        if existing:
            # Two persons behind one reference is a conflict for review (identity issue);
            # until then the oldest person wins, deterministically.
            person = min(existing)
        elif holders:
            person = max(holders)  # a person created earlier in this batch
        else:
            creating += 1
            person = -creating
        chosen.append(person)
        for k in ref.identifier_keys():
            known.setdefault(k, person)
    new_ids = await repository.create_persons(session, [{} for _ in range(creating)])
    real = [p if p > 0 else new_ids[-p - 1] for p in chosen]
    links = {
        k: pid
        for ref, pid in zip(refs, real, strict=True)
        for k in ref.identifier_keys()
        if k not in in_db
    }
    # Another worker may have linked the same identifier first: its person wins.
    owners = await repository.attach_identifiers(session, links)
    final = [
        min((owners[k] for k in ref.identifier_keys() if k in owners), default=pid)
        for ref, pid in zip(refs, real, strict=True)
    ]
    births = {pid: b for pid, ref in zip(final, refs, strict=True) if (b := ref.birth_date())}
    await repository.fill_birth_dates(session, births)
    return final
