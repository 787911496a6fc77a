"""Operators manage organisations and their machine clients over HTTP (as ``lookout orgs``
and ``lookout clients`` do at the CLI). Only organisations of kind ``operator`` may."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, Field

from lookout.api.deps import SessionDep, request_id
from lookout.api.permissions import DENIED_RESPONSES, Permission, require
from lookout.audit.service import Actor
from lookout.errors import NotFound
from lookout.orgs import repository, service
from lookout.orgs.models import OrgKind
from lookout.orgs.security import Principal

router = APIRouter(prefix="/v1", tags=["organisations"], responses=DENIED_RESPONSES)
Operator = Annotated[Principal, Depends(require(Permission.organisations_manage))]


class OrganisationIn(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    name: str = Field(min_length=1, max_length=200)
    kind: OrgKind
    la_code: str | None = Field(default=None, pattern=r"^[EWSN][0-9]{8}$")
    source: str | None = Field(default=None, min_length=1, max_length=255)
    school_urn: str | None = Field(default=None, pattern=r"^[0-9]{6}$")


class OrganisationOut(BaseModel):
    id: str
    name: str
    kind: str
    la_code: str | None
    source: str | None
    school_urn: str | None


class ClientSecretOut(BaseModel):
    client_id: str
    client_secret: str = Field(description="Shown once; only its hash is kept")


def _actor(request: Request, principal: Principal) -> Actor:
    return Actor(
        org_id=principal.org_id, client_id=principal.client_id, request_id=request_id(request)
    )


@router.get("/organisations", response_model=list[OrganisationOut], summary="List organisations")
async def list_organisations(session: SessionDep, _: Operator) -> list[OrganisationOut]:
    return [
        OrganisationOut.model_validate(o, from_attributes=True)
        for o in await repository.list_orgs(session)
    ]


@router.post(
    "/organisations",
    response_model=OrganisationOut,
    status_code=status.HTTP_201_CREATED,
    summary="Register an organisation",
    responses={
        400: {"description": "Missing or inconsistent fields"},
        409: {"description": "Id or source taken"},
    },
)
async def create_organisation(
    body: OrganisationIn, request: Request, session: SessionDep, principal: Operator
) -> OrganisationOut:
    org = await service.create_org(
        session,
        _actor(request, principal),
        org_id=body.id,
        name=body.name,
        kind=body.kind,
        la_code=body.la_code,
        source=body.source,
        school_urn=body.school_urn,
    )
    return OrganisationOut.model_validate(org, from_attributes=True)


@router.post(
    "/organisations/{org_id}/clients",
    response_model=ClientSecretOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a machine client for an organisation (the secret is shown once)",
    responses={404: {"description": "No such organisation"}},
)
async def create_client(
    org_id: str, request: Request, session: SessionDep, principal: Operator
) -> ClientSecretOut:
    if await repository.get_org(session, org_id) is None:
        raise NotFound("no such organisation")
    client_id, secret = await service.create_client(session, _actor(request, principal), org_id)
    return ClientSecretOut(client_id=client_id, client_secret=secret)


@router.post(
    "/clients/{client_id}/rotate",
    response_model=ClientSecretOut,
    summary="Rotate a client's secret: the old one stops working at once",
    responses={404: {"description": "No such active client"}},
)
async def rotate_client(
    client_id: str, request: Request, session: SessionDep, principal: Operator
) -> ClientSecretOut:
    if await repository.active_client(session, client_id) is None:
        raise NotFound("no such active client")
    secret = await service.rotate_client(session, _actor(request, principal), client_id)
    return ClientSecretOut(client_id=client_id, client_secret=secret)
