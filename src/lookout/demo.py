"""``lookout demo``: the NLGN example end to end against a running stack.

A mother attends the emergency department with an alcohol-related presentation; she lives
with two children. Hackney children's services receives one alert and can read why.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.cli import OPERATOR
from lookout.db import create_engine, session_factory
from lookout.errors import Conflict
from lookout.identity.identifiers import nhs_number_check_digit
from lookout.orgs import service
from lookout.orgs.models import OrgKind
from lookout.publisher import publish_events
from lookout.settings import Settings

LA = "E09000012"
HOSPITAL_SOURCE = "urn:lookout:agency:demo-hospital-ed"
COUNCIL_SOURCE = "urn:lookout:agency:demo-council-housing"


def _nhs_number() -> str:
    """A random number that passes the NHS Modulus 11 check (demo data, not a real person)."""
    while True:
        body = f"9{secrets.randbelow(10**8):08d}"
        digit = nhs_number_check_digit(body)
        if digit is not None:
            return body + str(digit)


def family() -> tuple[dict[str, str], dict[str, Any], list[dict[str, Any]]]:
    """A new address and family each run, so the demo can be run again and again."""
    address = {"uprn": str(100_000_000_000 + secrets.randbelow(10**9)), "la_code": LA}
    mother = {
        "nhs_number": _nhs_number(),
        "given_name": "Sarah",
        "family_name": "Turner",
        "birth_date": "1991-03-14",
    }
    children = [
        {
            "nhs_number": _nhs_number(),
            "given_name": "Leo",
            "family_name": "Turner",
            "birth_date": "2018-06-02",
        },
        {
            "nhs_number": _nhs_number(),
            "given_name": "Mia",
            "family_name": "Turner",
            "birth_date": "2021-09-19",
        },
    ]
    return address, mother, children


HEADERS = {"X-Lookout-End-User": "demo-social-worker", "X-Lookout-Purpose": "safeguarding_triage"}


def scenario(now: datetime, run: str) -> list[dict[str, Any]]:
    """The demo's events, with ids unique to this run and times relative to now."""

    def event(
        source: str, n: int, type_: str, at: datetime, subject: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": f"demo-{run}-{n}",
            "source": source,
            "type": f"uk.lookout.{type_}.v1",
            "time": at.isoformat(),
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        }

    address, mother, children = family()
    moved_in = (now - timedelta(days=400)).date().isoformat()
    events = [
        event(
            COUNCIL_SOURCE,
            i,
            "person.residence",
            now - timedelta(days=400),
            f"tenancy-{run}-{i}",
            {"person": p, "address": address, "change": "moved_in", "date": moved_in},
        )
        for i, p in enumerate([mother, *children], 1)
    ]
    events.append(
        event(
            HOSPITAL_SOURCE,
            9,
            "health.ed_attendance",
            now - timedelta(minutes=5),
            f"ed-{run}",
            {"patient": mother, "site_ods_code": "RQXM1", "presenting_reasons": ["alcohol"]},
        )
    )
    return events


async def _register(settings: Settings) -> tuple[str, str]:
    engine = create_engine(settings.database_url, pool_size=1)
    orgs = [
        (
            "demo-hackney-cs",
            "Hackney Children's Services (demo)",
            OrgKind.children_services,
            {"la_code": LA},
        ),
        ("demo-hospital", "Homerton ED (demo)", OrgKind.agency, {"source": HOSPITAL_SOURCE}),
        ("demo-council", "Hackney Housing (demo)", OrgKind.agency, {"source": COUNCIL_SOURCE}),
    ]

    async def work(session: AsyncSession) -> tuple[str, str]:
        for org_id, name, kind, extra in orgs:
            try:
                async with session.begin_nested():
                    await service.create_org(
                        session, OPERATOR, org_id=org_id, name=name, kind=kind, **extra
                    )
            except Conflict:
                pass  # registered by an earlier demo run
        return await service.create_client(session, OPERATOR, "demo-hackney-cs")

    try:
        async with session_factory(engine)() as session, session.begin():
            return await work(session)
    finally:
        await engine.dispose()


def run_demo(settings: Settings) -> int:
    client_id, secret = asyncio.run(_register(settings))
    run = secrets.token_hex(4)
    events = scenario(datetime.now(UTC), run)
    asyncio.run(publish_events(settings, events))
    print(
        f"Published {len(events)} events: three residents move in; the mother attends ED (alcohol)."
    )
    api = settings.api_url
    with httpx.Client(base_url=api, timeout=10) as http:
        token = (
            http.post(
                "/v1/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                },
            )
            .raise_for_status()
            .json()["access_token"]
        )
        auth = {"Authorization": f"Bearer {token}", **HEADERS}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            page = http.get("/v1/alerts", headers=auth).raise_for_status().json()
            fresh = [a for a in page["items"] if a["trigger_time"] >= events[-1]["time"][:19]]
            if fresh:
                alert = (
                    http.get(f"/v1/alerts/{fresh[0]['id']}", headers=auth).raise_for_status().json()
                )
                print("\nThe alert as Hackney children's services receives it:\n")
                print(orjson.dumps(alert, option=orjson.OPT_INDENT_2).decode())
                print("\nFetch it yourself:\n")
                print(
                    f"  TOKEN=$(curl -s {api}/v1/token -d grant_type=client_credentials "
                    f"-d client_id={client_id} -d client_secret={secret} | "
                    "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
                )
                print(
                    f'  curl -s {api}/v1/alerts/{alert["id"]} -H "Authorization: Bearer $TOKEN" '
                    "-H 'X-Lookout-End-User: you' -H 'X-Lookout-Purpose: safeguarding_triage'"
                )
                return 0
            time.sleep(0.5)
    print("no alert arrived within 30 s: is the worker running? (see `make run` output)")
    return 1
