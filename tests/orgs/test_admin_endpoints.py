"""Operators register organisations and clients over HTTP; client secrets rotate."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.factories import TEST_ACTOR, client_token

from lookout.orgs import service
from lookout.orgs.models import OrgKind

pytestmark = pytest.mark.asyncio


async def token_status(http: httpx.AsyncClient, client_id: str, secret: str) -> int:
    answer = await http.post(
        "/v1/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    return answer.status_code


async def test_operator_registers_an_organisation_and_rotates_its_client(
    sessions: async_sessionmaker[AsyncSession], api_url: str
) -> None:
    async with sessions() as session, session.begin():
        await service.create_org(
            session, TEST_ACTOR, org_id="ops", name="Ops", kind=OrgKind.operator
        )
    async with httpx.AsyncClient(base_url=api_url) as http:
        ops = await client_token(http, sessions, "ops")
        created = await http.post(
            "/v1/organisations",
            headers=ops,
            json={
                "id": "hackney-cs",
                "name": "Hackney",
                "kind": "children_services",
                "la_code": "E09000012",
            },
        )
        assert created.status_code == 201, created.text
        again = await http.post(
            "/v1/organisations", headers=ops, json=created.json() | {"kind": "children_services"}
        )
        assert again.status_code == 409
        no_la = await http.post(
            "/v1/organisations",
            headers=ops,
            json={"id": "x-cs", "name": "X", "kind": "children_services"},
        )
        assert no_la.status_code == 400
        assert "--la" in no_la.json()["detail"]
        listed = (await http.get("/v1/organisations", headers=ops)).json()
        assert {o["id"] for o in listed} == {"ops", "hackney-cs"}

        client = await http.post("/v1/organisations/hackney-cs/clients", headers=ops)
        assert client.status_code == 201
        client_id, secret = client.json()["client_id"], client.json()["client_secret"]
        assert await token_status(http, client_id, secret) == 200
        assert (await http.post("/v1/organisations/nobody/clients", headers=ops)).status_code == 404

        rotated = await http.post(f"/v1/clients/{client_id}/rotate", headers=ops)
        assert rotated.status_code == 200
        assert await token_status(http, client_id, secret) == 401
        assert await token_status(http, client_id, rotated.json()["client_secret"]) == 200
        assert (await http.post("/v1/clients/nobody.123/rotate", headers=ops)).status_code == 404

        cs = await client_token(http, sessions, "hackney-cs")
        assert (await http.get("/v1/organisations", headers=cs)).status_code == 403
