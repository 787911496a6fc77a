"""Every endpoint x every organisation kind x own / another organisation's object.

A kind without the permission gets 403; with it, another organisation's object answers
404 (its existence is never revealed) and its own object works. Nothing crosses
organisations: list endpoints only ever show the caller's own objects."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import (
    COUNCIL,
    HOSPITAL,
    NOW,
    ORGS_BY_KIND,
    OTHER_LA,
    OTHER_SCHOOL_URN,
    SCHOOL_URN,
    client_token,
    ed_attendance,
    person,
    raise_alerts,
    register_every_kind,
)

from lookout.alerts.models import Alert
from lookout.api.permissions import PERMISSIONS, Permission
from lookout.audit.service import Actor
from lookout.delivery import service as delivery
from lookout.household.models import Enrolment
from lookout.ingest import repository as ingest
from lookout.orgs.models import OrgKind
from lookout.settings import Settings

pytestmark = pytest.mark.asyncio


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str  # may hold {alert}, {subscription}, {rejection}, {household} or {person}
    permission: Permission
    body: Callable[[str], Any] | None = None  # org id -> JSON body
    owned: bool = True  # the path names an object owned by an organisation


def _event(source: str) -> bytes:
    e = ed_attendance(person(), at=NOW)
    e["source"] = source
    return orjson.dumps(e)


CALLS = [
    Call("list alerts", "GET", "/v1/alerts", Permission.alerts_read, owned=False),
    Call("read alert", "GET", "/v1/alerts/{alert}", Permission.alerts_read),
    Call(
        "note", "POST", "/v1/alerts/{alert}/notes", Permission.alerts_work, lambda _: {"text": "n"}
    ),
    Call(
        "assign",
        "POST",
        "/v1/alerts/{alert}/assign",
        Permission.alerts_work,
        lambda _: {"kind": "worker", "name": "w"},
    ),
    Call("acknowledge", "POST", "/v1/alerts/{alert}/acknowledge", Permission.alerts_work),
    Call(
        "close",
        "POST",
        "/v1/alerts/{alert}/close",
        Permission.alerts_work,
        lambda _: {"outcome": "no_further_action"},
    ),
    Call("list subscriptions", "GET", "/v1/subscriptions", Permission.subscriptions, owned=False),
    Call(
        "create subscription",
        "POST",
        "/v1/subscriptions",
        Permission.subscriptions,
        lambda _: {"url": "http://127.0.0.1:9/hook"},
        owned=False,
    ),
    Call("read subscription", "GET", "/v1/subscriptions/{subscription}", Permission.subscriptions),
    Call(
        "deliveries",
        "GET",
        "/v1/subscriptions/{subscription}/deliveries",
        Permission.subscriptions,
    ),
    Call(
        "delete subscription",
        "DELETE",
        "/v1/subscriptions/{subscription}",
        Permission.subscriptions,
    ),
    Call("list rejections", "GET", "/v1/rejections", Permission.rejections_read, owned=False),
    Call(
        "replay rejection",
        "POST",
        "/v1/rejections/{rejection}/replay",
        Permission.rejections_replay,
    ),
    Call("read household", "GET", "/v1/households/{household}", Permission.households_read),
    Call("read person", "GET", "/v1/persons/{person}", Permission.households_read),
    Call(
        "possible matches",
        "GET",
        "/v1/identity/possible-matches",
        Permission.identity_review,
        owned=False,
    ),
    Call("read audit trail", "GET", "/v1/audit", Permission.audit_read, owned=False),
    Call(
        "who has seen a person",
        "GET",
        "/v1/audit/persons/{person}/access",
        Permission.audit_read,
        owned=False,
    ),
    Call("verify audit trail", "GET", "/v1/audit/verify", Permission.audit_verify, owned=False),
    Call(
        "list organisations",
        "GET",
        "/v1/organisations",
        Permission.organisations_manage,
        owned=False,
    ),
    Call(
        "create organisation",
        "POST",
        "/v1/organisations",
        Permission.organisations_manage,
        lambda org: {"id": f"made-by-{org}", "name": "New", "kind": "operator"},
        owned=False,
    ),
    Call(
        "create client",
        "POST",
        "/v1/organisations/test-hospital/clients",
        Permission.organisations_manage,
        owned=False,
    ),
    Call(
        "undeliverable",
        "GET",
        "/v1/operator/undeliverable-alerts",
        Permission.undeliverable_read,
        owned=False,
    ),
]


async def test_no_endpoint_crosses_organisations_or_kinds(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    await register_every_kind(sessions)
    await raise_alerts(sessions, 2)
    await raise_alerts(sessions, 2, la_code=OTHER_LA)
    # One alert of each children's services goes to a school instead, so schools have some.
    async with sessions() as session, session.begin():
        for cs, school in (("hackney-cs", "test-school"), ("barking-cs", "other-school")):
            first = (
                await session.execute(select(Alert.id).where(Alert.recipient_org_id == cs).limit(1))
            ).scalar_one()
            await session.execute(
                update(Alert).where(Alert.id == first).values(recipient_org_id=school)
            )
        rows = (
            await session.execute(
                select(Alert.id, Alert.recipient_org_id, Alert.household_id, Alert.children)
            )
        ).all()
        alerts = {org: alert_id for alert_id, org, _, _ in rows}
        households = {org: household for _, org, household, _ in rows}
        children = {org: kids[0] for _, org, _, kids in rows}
        # A school sees its own pupils only: the child of its alert is one.
        for school, urn in (("test-school", SCHOOL_URN), ("other-school", OTHER_SCHOOL_URN)):
            session.add(Enrolment(person_id=children[school], school_urn=urn, dsl_org_id=school))
        subscriptions: dict[str | None, uuid.UUID] = {}
        for org in ("hackney-cs", "barking-cs", "test-school", "other-school"):
            created, _ = await delivery.create(
                session, Actor(org_id=org), "http://127.0.0.1:9/hook", allow_private=True
            )
            subscriptions[org] = created.id
        rejections: dict[str | None, uuid.UUID] = {}
        for org, source in (("test-hospital", HOSPITAL), ("test-council", COUNCIL)):
            rejection_id = uuid.uuid4()
            rejections[org] = rejection_id
            await ingest.insert_rejections(
                session,
                [
                    {
                        "id": rejection_id,
                        "reason": "schema_violation",
                        "detail": "data.x: bad",
                        "source": source,
                        "event_id": f"e-{org}",
                        "event_type": "uk.lookout.health.ed_attendance.v1",
                        "raw": _event(source),
                        "kafka_key": b"k",
                        "kafka_topic": settings.events_topic,
                        "kafka_partition": 0,
                        "kafka_offset": 0,
                    }
                ],
            )
    objects: dict[str, Mapping[str | None, uuid.UUID | int]] = {
        "alert": dict(alerts),
        "subscription": subscriptions,
        "rejection": rejections,
        "household": households,
        "person": children,
    }

    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=api_url) as http:
        for kind, (own_org, other_org) in ORGS_BY_KIND.items():
            headers = await client_token(http, sessions, own_org)
            for call in CALLS:
                permitted = call.permission in PERMISSIONS[kind]
                for whose in ("other", "own") if call.owned else ("own",):
                    owner = own_org if whose == "own" else other_org
                    path = call.path
                    for name, by_org in objects.items():
                        if "{" + name + "}" in path:
                            # Kinds that own no such object use anyone's: the answer must
                            # still be 403, or 404 for a foreign one.
                            target = by_org.get(owner) or next(iter(by_org.values()))
                            if kind is OrgKind.operator:
                                target = next(iter(by_org.values()))
                            path = path.replace("{" + name + "}", str(target))
                    body = call.body(own_org) if call.body else None
                    answer = await http.request(call.method, path, headers=headers, json=body)
                    if not permitted:
                        expected = {403}
                    elif call.owned and whose == "other" and kind is not OrgKind.operator:
                        expected = {404}
                    else:
                        expected = {200, 201, 204}
                    if answer.status_code not in expected:
                        wrong.append(
                            f"{kind.value} {whose} {call.name}: {answer.status_code} "
                            f"(expected {sorted(expected)})"
                        )
                    if call.name == "list alerts" and answer.status_code == 200:
                        ids = {i["id"] for i in answer.json()["items"]}
                        if not ids <= {str(alerts.get(own_org))}:
                            wrong.append(f"{kind.value} list alerts shows another's")
                    if call.name == "list subscriptions" and answer.status_code == 200:
                        ids = {i["id"] for i in answer.json()["items"]}
                        if str(subscriptions.get(other_org)) in ids:
                            wrong.append(f"{kind.value} list subscriptions shows another's")
                    if call.name == "list rejections" and answer.status_code == 200:
                        sources = {i["source"] for i in answer.json()["items"]}
                        if kind is OrgKind.agency and sources != {
                            HOSPITAL if own_org == "test-hospital" else COUNCIL
                        }:
                            wrong.append(f"agency sees rejections of {sources}")
                        if kind is OrgKind.operator and sources != {HOSPITAL, COUNCIL}:
                            wrong.append(f"operator sees only {sources}")
            # HTTPS ingest: publish as your own source only.
            for whose, source in (("own", HOSPITAL), ("other", COUNCIL)):
                answer = await http.post(
                    "/v1/events",
                    headers={**headers, "Content-Type": "application/cloudevents+json"},
                    content=_event(source),
                )
                if Permission.events_publish not in PERMISSIONS[kind]:
                    if answer.status_code != 403:
                        wrong.append(f"{kind.value} publish: {answer.status_code}")
                    continue
                [result] = answer.json()["results"]
                ok = result["status"] == "accepted"
                if ok != (whose == "own"):
                    wrong.append(f"agency publishes as {whose} source: {result}")
            # Without a token, nothing but health, metrics, docs and the token endpoint.
    async with httpx.AsyncClient(base_url=api_url) as http:
        for call in CALLS:
            path = call.path.format(
                alert=uuid.uuid4(),
                subscription=uuid.uuid4(),
                rejection=uuid.uuid4(),
                household=1,
                person=1,
            )
            answer = await http.request(call.method, path)
            if answer.status_code != 401:
                wrong.append(f"anonymous {call.name}: {answer.status_code}")
        stream = await http.get("/v1/alerts/stream")
        if stream.status_code != 401:
            wrong.append(f"anonymous stream: {stream.status_code}")
    assert wrong == []
