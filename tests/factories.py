"""Small builders of test data: events as agencies publish them, and registered organisations."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout.audit.sealer import SealResult, seal_once
from lookout.audit.service import Actor
from lookout.db import create_engine
from lookout.embedded.postgres import free_port
from lookout.identity.identifiers import nhs_number_check_digit, upn_check_letter
from lookout.ingest.catalogue import Catalogue
from lookout.orgs import service
from lookout.orgs.models import OrgKind
from lookout.pipeline import BatchResult, Message, PipelineConfig, process_batch
from lookout.rules.model import load_rules
from lookout.settings import PROJECT_ROOT, Settings

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


POLICE = "urn:lookout:agency:test-police"


def domestic_abuse_incident(
    involved: Sequence[dict[str, Any]],
    present: Sequence[dict[str, Any]] = (),
    address: dict[str, str] = ADDRESS,
    *,
    at: datetime = NOW,
    **kw: Any,
) -> dict[str, Any]:
    data = {
        "incident_ref": f"CAD-{next(_serial)}",
        "address": address,
        "persons_involved": [{"person": p, "role": "victim"} for p in involved],
        "children_present": list(present),
    }
    return event("police.domestic_abuse_incident", data, at=at, source=POLICE, **kw)


def absence(
    pupil: dict[str, Any], *, urn: str = "100241", at: datetime = NOW, **kw: Any
) -> dict[str, Any]:
    data = {
        "pupil": pupil,
        "school_urn": urn,
        "threshold": "persistent",
        "attendance_rate": 0.84,
        "period_start": "2026-09-03",
        "period_end": "2026-11-20",
    }
    return event("education.absence", data, at=at, source=SCHOOL, **kw)


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


async def register_police(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The police force that publishes ``domestic_abuse_incident`` events."""
    async with sessions() as session, session.begin():
        await service.create_org(
            session,
            TEST_ACTOR,
            org_id="test-police",
            name="Police",
            kind=OrgKind.agency,
            source=POLICE,
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


def with_state_dir(settings: Settings, state_dir: Path) -> Settings:
    """The test's settings with its own state dir (audit signing key, checkpoint files)."""
    return settings.model_copy(update={"state_dir": state_dir, "audit_seal_wait_s": 5.0})


async def register_auditor(
    sessions: async_sessionmaker[AsyncSession], org_id: str = "ico-auditor"
) -> tuple[str, str]:
    """An auditor organisation and one client of it: (client_id, secret)."""
    async with sessions() as session, session.begin():
        await service.create_org(
            session, TEST_ACTOR, org_id=org_id, name="Auditor", kind=OrgKind.auditor
        )
        return await service.create_client(session, TEST_ACTOR, org_id)


async def seal(settings: Settings) -> SealResult:
    """One sealer pass with a checkpoint, as ``lookout audit seal`` runs it."""
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        return await seal_once(engine, settings, force_checkpoint=True)
    finally:
        await engine.dispose()


# Alerts for the HTTP tests ---------------------------------------------------------

SCHOOL_URN, OTHER_SCHOOL_URN = "100001", "100002"
# Per organisation kind: (own organisation, another organisation of the same kind).
ORGS_BY_KIND: dict[OrgKind, tuple[str, str]] = {
    OrgKind.agency: ("test-hospital", "test-council"),
    OrgKind.children_services: ("hackney-cs", "barking-cs"),
    OrgKind.school: ("test-school", "other-school"),
    OrgKind.operator: ("test-operator", "other-operator"),
    OrgKind.auditor: ("test-auditor", "other-auditor"),
}


async def register_every_kind(sessions: async_sessionmaker[AsyncSession]) -> None:
    """The usual agencies and children's services, plus two of every other kind."""
    await register_orgs(sessions)
    async with sessions() as session, session.begin():
        for org_id, urn in (("test-school", SCHOOL_URN), ("other-school", OTHER_SCHOOL_URN)):
            await service.create_org(
                session,
                TEST_ACTOR,
                org_id=org_id,
                name=org_id,
                kind=OrgKind.school,
                school_urn=urn,
            )
        for kind in (OrgKind.operator, OrgKind.auditor):
            for org_id in ORGS_BY_KIND[kind]:
                await service.create_org(session, TEST_ACTOR, org_id=org_id, name=org_id, kind=kind)


def household_events(address: dict[str, str] = ADDRESS, at: datetime = NOW) -> list[dict[str, Any]]:
    """An adult and two children at ``address``; the adult attends ED for alcohol at ``at``
    (rule 1 raises one alert for the children's services of the address's LA)."""
    mother, child1, child2 = (
        person(years_before(at, 34)),
        person(years_before(at, 7)),
        person(years_before(at, 4)),
    )
    since = years_before(at, 1)
    return [
        moved_in(mother, since, address, at=at - timedelta(days=300)),
        moved_in(child1, since, address, at=at - timedelta(days=300)),
        moved_in(child2, since, address, at=at - timedelta(days=300)),
        ed_attendance(mother, at=at - timedelta(minutes=10)),
    ]


def address(n: int, la_code: str = LA) -> dict[str, str]:
    """A distinct UPRN per ``n`` (a separate household)."""
    return {"uprn": f"{200000000000 + n}", "la_code": la_code}


async def raise_alerts(
    sessions: async_sessionmaker[AsyncSession], count: int = 1, la_code: str = LA
) -> BatchResult:
    """``count`` alerts for the children's services of ``la_code``, in one batch."""
    return await raise_alerts_for(sessions, {la_code: count})


async def raise_alerts_for(
    sessions: async_sessionmaker[AsyncSession], counts: Mapping[str, int]
) -> BatchResult:
    """``counts[la]`` alerts for the children's services of each LA, in one batch (the
    households in the order of ``counts``)."""
    start = next(_serial) * 1000
    las = [la for la, count in counts.items() for _ in range(count)]
    events = [e for n, la in enumerate(las) for e in household_events(address(start + n, la))]
    return await Feeder(sessions, pipeline_config(group_id=f"g-{start}")).feed(events)


async def client_token(
    http: Any, sessions: async_sessionmaker[AsyncSession], org_id: str
) -> dict[str, str]:
    """Headers with a fresh client's access token for ``org_id`` and the end-user headers."""
    async with sessions() as session, session.begin():
        client_id, secret = await service.create_client(session, TEST_ACTOR, org_id)
    answer = await http.post(
        "/v1/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}", **END_USER}


END_USER = {"X-Lookout-End-User": "sw-42", "X-Lookout-Purpose": "safeguarding_triage"}


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn (its lifespan included) on a free port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
