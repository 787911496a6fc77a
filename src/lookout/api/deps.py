"""Request-scoped dependencies: the session (the edge commits), the caller, the audit actor.

They are ``async def`` although none of them awaits: FastAPI runs a plain ``def``
dependency in its thread pool, a thread hand-off per dependency per request (about as
costly as the work itself), where an ``async def`` one runs inline on the event loop.
Nothing here blocks (the token check is an HMAC, once per token: ``lookout.api.tokens``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lookout.api.tokens import VerifiedTokens
from lookout.audit.service import Actor
from lookout.errors import LookoutError, NotAuthenticated
from lookout.orgs.security import Principal
from lookout.settings import Settings


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed here and only here. A service error
    (a 4xx) still commits, so that its audit record (e.g. a denied request) lands."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        try:
            yield session
        except LookoutError:
            await session.commit()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def commit_each_statement(session: AsyncSession) -> None:
    """For a request whose one write is its last statement (a list and its audit record):
    PostgreSQL commits each statement as it runs (autocommit), with no BEGIN and COMMIT
    round trips. A page of ``GET /v1/alerts`` went from four round trips to two (BEGIN and
    COMMIT were about an eighth of its CPU). The audit record is still durable before the
    response: asyncpg returns from the insert only once the server has committed it, and
    if it fails the request fails. Call it before the session's first statement; the
    pool gives the connection back to the next request in the usual mode."""
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def request_id(request: Request) -> str:
    rid: str = getattr(request.state, "request_id", "") or uuid.uuid4().hex
    return rid


_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/token")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise NotAuthenticated(
            "send an access token: Authorization: Bearer <token> (POST /v1/token)"
        )
    tokens: VerifiedTokens = request.app.state.tokens
    principal = tokens.read(credentials.credentials)
    if principal is None:
        raise NotAuthenticated(
            "the access token is invalid or has expired: get a new one from POST /v1/token"
        )
    return principal


PURPOSE_PATTERN = r"^[a-z][a-z0-9_]{2,39}$"


async def end_user_actor(
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    end_user: Annotated[
        str | None,
        Header(
            alias="X-Lookout-End-User",
            description=(
                "The person using the client system (an opaque id from that system). "
                "Required for personal data."
            ),
            max_length=200,
        ),
    ] = None,
    purpose: Annotated[
        str | None,
        Header(
            alias="X-Lookout-Purpose",
            description=(
                "Purpose of use, e.g. `safeguarding_triage`, `case_work`. "
                "Required for personal data."
            ),
            pattern=PURPOSE_PATTERN,
        ),
    ] = None,
) -> Actor:
    """The audit actor for a request that reads or changes personal data."""
    if not end_user or not purpose:
        raise LookoutError(
            "name the end user and the purpose of use: "
            "headers X-Lookout-End-User and X-Lookout-Purpose"
        )
    return Actor(
        org_id=principal.org_id,
        client_id=principal.client_id,
        end_user=end_user,
        purpose=purpose,
        request_id=request_id(request),
    )


SessionDep = Annotated[AsyncSession, Depends(get_session)]
PrincipalDep = Annotated[Principal, Depends(current_principal)]
ActorDep = Annotated[Actor, Depends(end_user_actor)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
