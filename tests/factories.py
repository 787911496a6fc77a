"""Small builders of test data: events as agencies publish them, and registered organisations."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout.audit.service import Actor
from lookout.identity.identifiers import nhs_number_check_digit, upn_check_letter
from lookout.ingest.catalogue import Catalogue
from lookout.orgs import service
from lookout.orgs.models import OrgKind
from lookout.pipeline import BatchResult, Message, PipelineConfig, process_batch
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT

LA = "E09000012"
OTHER_LA = "E09000002"
HOSPITAL = "urn:lookout:agency:test-hospital"
COUNCIL = "urn:lookout:agency:test-council"
SCHOOL = "urn:lookout:agency:test-school"
ADDRESS = {"uprn": "100023336956", "la_code": LA}
NOW = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)
TEST_ACTOR = Actor(client_id="tests")

_serial = itertools.count(1)


def nhs_number() -> str:
    """A fresh NHS number that passes the Modulus 11 check."""
    while True:
        body = f"943{next(_serial):06d}"
        digit = nhs_number_check_digit(body)
        if digit is not None:
            return body + str(digit)


def upn() -> str:
    """A fresh permanent UPN with a correct check letter."""
    body = f"20420012{next(_serial):04d}"
    return upn_check_letter(body) + body


def person(birth: date | None = None, **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"nhs_number": nhs_number(), **extra}
    if birth is not None:
        p["birth_date"] = birth.isoformat()
    return p


def years_before(at: datetime, years: int, days: int = 0) -> date:
    on = at.astimezone(ZoneInfo("Europe/London")).date()
    return on.replace(year=on.year - years) - timedelta(days=days)


def event(
    type_: str,
    data: dict[str, Any],
    *,
    at: datetime = NOW,
    source: str = COUNCIL,
    id_: str | None = None,
) -> dict[str, Any]:
    n = next(_serial)
    return {
        "specversion": "1.0",
        "id": id_ or f"evt-{n}",
        "source": source,
        "type": f"uk.lookout.{type_}.v1",
        "time": at.isoformat(),
        "subject": f"ref-{n}",
        "datacontenttype": "application/json",
        "data": data,
    }


def moved_in(
    who: dict[str, Any], on: date, address: dict[str, str] = ADDRESS, **kw: Any
) -> dict[str, Any]:
    return event(
        "person.residence",
        {"person": who, "address": address, "change": "moved_in", "date": on.isoformat()},
        **kw,
    )


def moved_out(
    who: dict[str, Any], on: date, address: dict[str, str] = ADDRESS, **kw: Any
) -> dict[str, Any]:
    return event(
        "person.residence",
        {"person": who, "address": address, "change": "moved_out", "date": on.isoformat()},
        **kw,
    )


def ed_attendance(
    who: dict[str, Any], reasons: Sequence[str] = ("alcohol",), *, at: datetime = NOW, **kw: Any
) -> dict[str, Any]:
    data = {"patient": who, "site_ods_code": "RQXM1", "presenting_reasons": list(reasons)}
    return event("health.ed_attendance", data, at=at, source=HOSPITAL, **kw)


def enrolment(
    pupil: dict[str, Any],
    start: date,
    end: date | None = None,
    *,
    urn: str = "100241",
    dsl: str = "test-school",
    **kw: Any,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "pupil": pupil,
        "school_urn": urn,
        "start_date": start.isoformat(),
        "dsl_org_id": dsl,
    }
    if end is not None:
        data["end_date"] = end.isoformat()
    return event("education.enrolment", data, source=SCHOOL, **kw)


def protection_plan(
    child: dict[str, Any], change: str, on: date, *, la: str = LA, **kw: Any
) -> dict[str, Any]:
    data = {"child": child, "la_code": la, "change": change, "date": on.isoformat()}
    return event("social_care.child_protection_plan", data, **kw)


def relationship(
    a: dict[str, Any], b: dict[str, Any], kind: str = "parent", **kw: Any
) -> dict[str, Any]:
    return event(
        "person.relationship", {"person": a, "related_person": b, "relationship": kind}, **kw
    )


def encode(events: Sequence[dict[str, Any] | bytes]) -> list[bytes]:
    return [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]


async def register_orgs(
    sessions: async_sessionmaker[AsyncSession], *, children_services: bool = True
) -> None:
    async with sessions() as session, session.begin():
        await service.create_org(
            session,
            TEST_ACTOR,
            org_id="test-hospital",
            name="Hospital",
            kind=OrgKind.agency,
            source=HOSPITAL,
        )
        await service.create_org(
            session,
            TEST_ACTOR,
            org_id="test-council",
            name="Council",
            kind=OrgKind.agency,
            source=COUNCIL,
        )
        await service.create_org(
            session,
            TEST_ACTOR,
            org_id="test-school-agency",
            name="School MIS",
            kind=OrgKind.agency,
            source=SCHOOL,
        )
        if children_services:
            await service.create_org(
                session,
                TEST_ACTOR,
                org_id="hackney-cs",
                name="Hackney CS",
                kind=OrgKind.children_services,
                la_code=LA,
            )
            await service.create_org(
                session,
                TEST_ACTOR,
                org_id="barking-cs",
                name="Barking CS",
                kind=OrgKind.children_services,
                la_code=OTHER_LA,
            )


def pipeline_config(
    *, now: datetime = NOW, cluster_id: str = "cluster-a", group_id: str = "g"
) -> PipelineConfig:
    return PipelineConfig(
        catalogue=Catalogue.load(PROJECT_ROOT / "schemas"),
        rules=load_rules(PROJECT_ROOT / "rules"),
        group_id=group_id,
        cluster_id=cluster_id,
        max_event_bytes=256 * 1024,
        max_future_skew=timedelta(minutes=5),
        alerting_horizon=timedelta(days=30),
        timezone=ZoneInfo("Europe/London"),
        clock=lambda: now,
    )


class Feeder:
    """Feeds messages through the pipeline in batches, one transaction each, like the worker."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], config: PipelineConfig | None = None
    ) -> None:
        self.sessions = sessions
        self.config = config or pipeline_config()
        self.offsets: dict[int, int] = {}
        self.positions: dict[tuple[str, int], Any] = {}

    async def feed(
        self, events: Sequence[dict[str, Any] | bytes], partition: int = 0
    ) -> BatchResult:
        start = self.offsets.get(partition, 0)
        messages = [
            Message("events", partition, start + i, b"key", raw)
            for i, raw in enumerate(encode(events))
        ]
        async with self.sessions() as session, session.begin():
            result = await process_batch(session, messages, self.config, self.positions)
        from lookout.ingest.repository import Position

        self.offsets[partition] = start + len(messages)
        self.positions[("events", partition)] = Position(
            self.config.cluster_id, self.offsets[partition]
        )
        return result

    async def feed_each(self, events: Sequence[dict[str, Any] | bytes]) -> list[BatchResult]:
        return [await self.feed([e]) for e in events]
