"""``POST /v1/token``: the OAuth2 client-credentials grant."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from pydantic import BaseModel

from lookout.api.deps import SessionDep, SettingsDep, request_id
from lookout.audit.service import Actor
from lookout.orgs import service

router = APIRouter(prefix="/v1", tags=["auth"])


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


@router.post(
    "/token",
    response_model=TokenOut,
    summary="Exchange client credentials for a short-lived access token",
    responses={401: {"description": "Unknown client or wrong secret"}},
)
async def token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    grant_type: Annotated[Literal["client_credentials"], Form()],
    client_id: Annotated[str, Form(min_length=1, max_length=64)],
    client_secret: Annotated[str, Form(min_length=1, max_length=200)],
) -> TokenOut:
    ttl = timedelta(seconds=settings.token_ttl_s)
    access = await service.issue_token(
        session,
        Actor(request_id=request_id(request)),
        client_id,
        client_secret,
        settings.token_secret.get_secret_value(),
        ttl,
    )
    return TokenOut(access_token=access, expires_in=settings.token_ttl_s)
