"""Identity resolution through the real pipeline on a real PostgreSQL: deterministic links,
merges, conflicts, demographic bands, review and unlink."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    NOW,
    TEST_ACTOR,
    Feeder,
    ed_attendance,
    enrolment,
    event,
    moved_in,
    nhs_number,
    person,
    register_orgs,
    upn,
    years_before,
)

from lookout.alerts.models import Alert
from lookout.audit.models import AuditRecord
from lookout.errors import Conflict
from lookout.household.models import Enrolment, Residence
from lookout.identity import service
from lookout.identity.models import IdentityMerge, Person, PersonIdentifier, PossibleMatch
from lookout.ingest.models import Event
from lookout.ingest.repository import agencies_by_source

pytestmark = pytest.mark.asyncio
SINCE = years_before(NOW, 1)


async def rows(sessions: async_sessionmaker[AsyncSession], query: Any) -> list[Any]:
    async with sessions() as session:
        return list((await session.execute(query)).all())


async def subject_of(sessions: async_sessionmaker[AsyncSession], event_id: str) -> int:
    [(pid,)] = await rows(
        sessions, select(Event.subject_person_id).where(Event.event_id == event_id)
    )
    return int(pid)


async def audit_text(sessions: async_sessionmaker[AsyncSession]) -> str:
    records = await rows(sessions, select(AuditRecord.action, AuditRecord.details))
    return orjson.dumps([[a, d] for a, d in records]).decode()


async def test_one_person_per_strong_identifier(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    nhs = nhs_number()
    first, second = moved_in({"nhs_number": nhs}, SINCE), ed_attendance({"nhs_number": nhs})
    await Feeder(sessions).feed_each([first, second])
    assert await subject_of(sessions, first["id"]) == await subject_of(sessions, second["id"])
    assert len(await rows(sessions, select(Person.id))) == 1


async def test_local_ids_are_namespaced_by_the_publisher(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    a = moved_in({"la_person_id": "P-1"}, SINCE)
    b = ed_attendance({"police_person_id": "P-1"})
    feeder = Feeder(sessions)
    await feeder.feed([a, b])
    ids = {v for (v,) in await rows(sessions, select(PersonIdentifier.value))}
    assert ids == {"test-council:P-1", "test-hospital:P-1"}


async def merge_scenario(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[Feeder, dict[str, Any], dict[str, Any]]:
    """An adult's ED attendance known by NHS number, her residence (with a child) known
    only by the council's id; then a council record carrying both links them."""
    await register_orgs(sessions)
    nhs = nhs_number()
    mother_council = {"la_person_id": "HK-1", "birth_date": years_before(NOW, 34).isoformat()}
    child = person(years_before(NOW, 5))
    feeder = Feeder(sessions)
    await feeder.feed([ed_attendance({"nhs_number": nhs})])
    await feeder.feed([moved_in(mother_council, SINCE), moved_in(child, SINCE)])
    assert await rows(sessions, select(Alert.id)) == []
    both = {"la_person_id": "HK-1", "nhs_number": nhs}
    return feeder, both, child


async def test_two_strong_ids_of_two_persons_merge_and_re_evaluate(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    feeder, both, _ = await merge_scenario(sessions)
    linking = event("charity.concern", {"person": both, "concern_categories": ["other"]})
    await feeder.feed([linking])
    [merge] = [m for (m,) in await rows(sessions, select(IdentityMerge))]
    assert merge.reason == "strong_identifier"
    survivor, merged = merge.survivor_id, merge.merged_id
    assert survivor < merged
    assert merge.moved_identifiers == [["la_person_id", "test-council:HK-1"]]
    [(merged_into,)] = await rows(sessions, select(Person.merged_into).where(Person.id == merged))
    assert merged_into == survivor
    # Both histories now belong to the survivor, whose residence was rebuilt ...
    holders = {p for (p,) in await rows(sessions, select(Event.subject_person_id))}
    assert merged not in holders
    assert {p for (p,) in await rows(sessions, select(Residence.person_id))} >= {survivor}
    # ... and the household was re-evaluated: the earlier ED attendance now raises the alert.
    [alert] = [a for (a,) in await rows(sessions, select(Alert))]
    assert alert.rule_id == "adult-substance-misuse-ed"
    text = await audit_text(sessions)
    assert "worker:person:merged" in text
    assert both["nhs_number"] not in text
    assert "HK-1" not in text


async def test_unlink_restores_the_person_and_marks_alerts_for_review(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    feeder, both, _ = await merge_scenario(sessions)
    await feeder.feed([event("charity.concern", {"person": both, "concern_categories": ["other"]})])
    [merge] = [m for (m,) in await rows(sessions, select(IdentityMerge))]
    async with sessions() as session, session.begin():
        agencies = await agencies_by_source(
            session, [s for (s,) in (await session.execute(select(Event.source))).all()]
        )
        done = await service.unlink(session, TEST_ACTOR, merge.survivor_id, None, agencies)
    assert done.restored_person_id == merge.merged_id
    assert done.moved_identifiers == 1
    assert done.moved_events == 1  # the council residence; the linking event keeps the NHS no.
    owners = dict(
        await rows(
            sessions,
            select(PersonIdentifier.value, PersonIdentifier.person_id).where(
                PersonIdentifier.value.in_([both["nhs_number"], "test-council:HK-1"])
            ),
        )
    )
    assert owners == {both["nhs_number"]: merge.survivor_id, "test-council:HK-1": merge.merged_id}
    [alert] = [a for (a,) in await rows(sessions, select(Alert))]
    assert alert.review_reason is not None
    assert alert.id in done.alerts_for_review
    [(undone,)] = await rows(sessions, select(IdentityMerge.undone_at))
    assert undone is not None
    text = await audit_text(sessions)
    assert "reviewer:person:unlinked" in text
    assert both["nhs_number"] not in text


async def test_conflicting_identifiers_are_recorded_not_merged(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    pupil = {"nhs_number": nhs_number(), "upn": upn()}
    feeder = Feeder(sessions)
    await feeder.feed([enrolment(pupil, date(2024, 9, 4))])
    clash = {"upn": pupil["upn"], "nhs_number": nhs_number()}
    second = enrolment(clash, date(2025, 9, 3), urn="100242")
    await feeder.feed([second])
    await feeder.feed([enrolment(clash, date(2025, 9, 3), urn="100243")])
    assert await rows(sessions, select(IdentityMerge.id)) == []
    [match] = [m for (m,) in await rows(sessions, select(PossibleMatch))]
    assert match.kind == "conflict"
    assert match.evidence == {"conflicting_schemes": ["nhs_number"]}
    upn_holder = await subject_of(sessions, second["id"])
    assert {match.person_id, match.other_person_id} == {upn_holder, match.other_person_id}
    assert match.person_id == upn_holder
    owners = dict(await rows(sessions, select(PersonIdentifier.value, PersonIdentifier.person_id)))
    assert owners[clash["nhs_number"]] == match.other_person_id
    assert owners[pupil["nhs_number"]] == upn_holder


def sarah(**overrides: Any) -> dict[str, Any]:
    return {
        "given_name": "Sarah",
        "family_name": "Turner",
        "birth_date": "1994-03-12",
        "postcode": "E8 1DY",
        **overrides,
    }


@pytest.mark.parametrize("nhs_first", [True, False], ids=["nhs number first", "nhs number later"])
@pytest.mark.parametrize(
    ("demographics", "outcome"),
    [
        (sarah(given_name="SARAH", postcode="e81dy"), "same"),
        (sarah(birth_date="1994-12-03"), "same"),
        (sarah(given_name="Emma"), "possible"),
        (sarah(birth_date="1971-03-12", postcode="N1 9GU"), "new"),
    ],
)
async def test_demographic_bands(
    sessions: async_sessionmaker[AsyncSession],
    demographics: dict[str, Any],
    outcome: str,
    nhs_first: bool,
) -> None:
    """The same bands whichever reference comes first: the one with an NHS number new to
    Lookout, or the demographics-only one (a link then gives the NHS number to the person
    already known)."""
    await register_orgs(sessions)
    number = nhs_number()
    if nhs_first:
        known = moved_in({"nhs_number": number, **sarah()}, SINCE)
        later = ed_attendance(demographics)
    else:
        known = moved_in(sarah(), SINCE)
        later = ed_attendance({"nhs_number": number, **demographics})
    await Feeder(sessions).feed_each([known, later])
    first, second = await subject_of(sessions, known["id"]), await subject_of(sessions, later["id"])
    matches = [m for (m,) in await rows(sessions, select(PossibleMatch))]
    owners = dict(await rows(sessions, select(PersonIdentifier.value, PersonIdentifier.person_id)))
    assert owners[number] == (first if nhs_first else second)
    if outcome == "same":
        assert first == second
        assert matches == []
        assert "worker:person:linked_by_demographics" in await audit_text(sessions)
    elif outcome == "possible":
        assert first != second
        [match] = matches
        assert (match.person_id, match.other_person_id) == (first, second)
        assert match.kind == "demographic"
        assert match.evidence["levels"]["given_name"] == "disagree"
    else:
        assert first != second
        assert matches == []
    text = await audit_text(sessions)
    assert "Turner" not in text
    assert "1994" not in text
    assert number not in text


async def test_a_person_with_another_nhs_number_is_never_linked_on_demographics(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Identical demographics, two different NHS numbers: two persons (twins, or one of
    the numbers is wrong), and no pair for review either way."""
    await register_orgs(sessions)
    known = moved_in({"nhs_number": nhs_number(), **sarah()}, SINCE)
    later = ed_attendance({"nhs_number": nhs_number(), **sarah()})
    await Feeder(sessions).feed_each([known, later])
    assert await subject_of(sessions, known["id"]) != await subject_of(sessions, later["id"])
    assert await rows(sessions, select(PossibleMatch)) == []


async def test_confirm_merges_and_reject_closes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    await Feeder(sessions).feed_each(
        [
            moved_in({"nhs_number": nhs_number(), **sarah()}, SINCE),
            ed_attendance(sarah(given_name="Emma")),
            ed_attendance(sarah(given_name="Emily", birth_date="1994-03-21")),
        ]
    )
    first, second = [
        m for (m,) in await rows(sessions, select(PossibleMatch).order_by(PossibleMatch.id))
    ]
    async with sessions() as session, session.begin():
        confirmed = await service.confirm(session, TEST_ACTOR, first.id)
        rejected = await service.reject(session, TEST_ACTOR, second.id)
    assert confirmed.merge_id is not None
    assert confirmed.survivor_id == first.person_id
    assert rejected.status == "rejected"
    [(merged_into,)] = await rows(
        sessions, select(Person.merged_into).where(Person.id == first.other_person_id)
    )
    assert merged_into == first.person_id
    async with sessions() as session, session.begin():
        with pytest.raises(Conflict):
            await service.reject(session, TEST_ACTOR, first.id)
    text = await audit_text(sessions)
    assert "reviewer:possible_match:confirmed" in text
    assert "reviewer:possible_match:rejected" in text


async def test_a_merge_rebuilds_derived_enrolments(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await register_orgs(sessions)
    nhs, pupil_upn = nhs_number(), upn()
    feeder = Feeder(sessions)
    await feeder.feed([moved_in({"nhs_number": nhs}, SINCE)])
    await feeder.feed([enrolment({"upn": pupil_upn}, date(2024, 9, 4))])
    await feeder.feed(
        [
            event(
                "charity.concern",
                {"person": {"nhs_number": nhs, "upn": pupil_upn}, "concern_categories": ["other"]},
            )
        ]
    )
    [(survivor,)] = await rows(sessions, select(IdentityMerge.survivor_id))
    assert [p for (p,) in await rows(sessions, select(Enrolment.person_id))] == [survivor]


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), "one batch"])
async def test_merges_do_not_depend_on_arrival_order(
    sessions: async_sessionmaker[AsyncSession], order: tuple[int, ...] | str
) -> None:
    """The same facts in any order (or in one batch) give one merged person and one alert."""
    await register_orgs(sessions)
    nhs = nhs_number()
    events = [
        ed_attendance({"nhs_number": nhs}),
        moved_in({"la_person_id": "HK-9", "birth_date": "1990-01-01"}, SINCE),
        moved_in(person(years_before(NOW, 3)), SINCE),
        event(
            "charity.concern",
            {
                "person": {"la_person_id": "HK-9", "nhs_number": nhs},
                "concern_categories": ["other"],
            },
        ),
    ]
    feeder = Feeder(sessions)
    if isinstance(order, str):
        await feeder.feed(events)
    else:
        await feeder.feed_each([events[i] for i in order])
    live = await rows(sessions, select(Person.id).where(Person.merged_into.is_(None)))
    assert len(live) == 2  # the mother and the child
    assert len(await rows(sessions, select(Alert.id))) == 1
