"""``/v1/alerts/stream`` (Server-Sent Events) and ``/v1/subscriptions`` (webhooks).

The stream uses ``sse-starlette``'s ``EventSourceResponse`` rather than a hand-made
``StreamingResponse``: it frames events per the SSE spec, sends the heartbeat comment
lines on its own timer (so a quiet organisation still sees traffic through proxies),
notices a client that went away and cancels the generator, and drains on server
shutdown. New events are found by polling the ``alert_events`` outbox every
``LOOKOUT_STREAM_POLL_INTERVAL_S`` with a short transaction per poll: no connection is
held between polls and it works the same behind any PostgreSQL proxy, where
LISTEN/NOTIFY needs a dedicated connection per API replica and still needs the outbox
read to resume from ``Last-Event-ID``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import EventSourceResponse, ServerSentEvent

from lookout.api.deps import PrincipalDep, SessionDep, SettingsDep, request_id
from lookout.api.permissions import DENIED_RESPONSES, Permission, require
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.delivery import repository, service
from lookout.delivery.schemas import (
    DeliveryOut,
    DeliveryPage,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)
from lookout.orgs.security import Principal

stream_router = APIRouter(prefix="/v1/alerts", tags=["delivery"])
router = APIRouter(prefix="/v1/subscriptions", tags=["delivery"])

_COMMON = DENIED_RESPONSES
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such subscription for your organisation"}
}


def _actor(request: Request, principal: Principal) -> Actor:
    return Actor(
        org_id=principal.org_id, client_id=principal.client_id, request_id=request_id(request)
    )


@stream_router.get(
    "/stream",
    summary="Server-Sent Events of your organisation's alert changes",
    description=(
        "Each event's `id` is the organisation's gapless alert-event sequence, its `event` "
        "the type (alert.created, alert.updated, alert.escalated) and its `data` the thin "
        "payload (ids only: read the alert with GET /v1/alerts/{id}). Reconnect with "
        "`Last-Event-ID` to resume after the last event you saw; without it the stream "
        "starts with the next change. Heartbeat comment lines keep the connection alive."
    ),
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}, **_COMMON},
    dependencies=[Depends(require(Permission.alerts_read))],
)
async def stream(
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", max_length=20, pattern=r"^[0-9]{1,18}$"),
    ] = None,
) -> Response:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    org_id = principal.org_id
    async with sessions() as session, session.begin():
        start = (
            int(last_event_id)
            if last_event_id is not None
            else await repository.last_event_sequence(session, org_id)
        )
        await record(
            session,
            _actor(request, principal),
            [Entry(Action.alert_stream_opened, "alert_stream", org_id, details={"from": start})],
        )

    async def events() -> AsyncIterator[ServerSentEvent]:
        after = start
        while True:
            async with sessions() as session:
                batch = await repository.events_after(session, org_id, after, 100)
            for event in batch:
                after = event.sequence
                yield ServerSentEvent(
                    id=str(event.sequence),
                    event=event.type,
                    data=orjson.dumps(
                        {**service.payload(event)["data"], "type": event.type}
                    ).decode(),
                )
            if len(batch) < 100:
                await asyncio.sleep(settings.stream_poll_interval_s)

    return EventSourceResponse(events(), ping=settings.stream_heartbeat_s)


@router.post(
    "",
    response_model=SubscriptionCreated,
    status_code=201,
    summary="Register a webhook URL; the signing secret is shown once",
    responses={
        400: {"description": "The URL is refused (private address, bad scheme)"},
        **_COMMON,
    },
    dependencies=[Depends(require(Permission.subscriptions))],
)
async def create_subscription(
    request: Request,
    body: SubscriptionIn,
    principal: PrincipalDep,
    session: SessionDep,
    settings: SettingsDep,
) -> SubscriptionCreated:
    subscription, secret = await service.create(
        session,
        _actor(request, principal),
        str(body.url),
        allow_private=settings.webhook_allow_private,
    )
    return SubscriptionCreated(
        **SubscriptionOut.model_validate(subscription, from_attributes=True).model_dump(),
        secret=secret,
    )


@router.get(
    "",
    response_model=SubscriptionList,
    summary="List your organisation's webhook subscriptions",
    responses=_COMMON,
    dependencies=[Depends(require(Permission.subscriptions))],
)
async def list_subscriptions(principal: PrincipalDep, session: SessionDep) -> SubscriptionList:
    found = await repository.subscriptions_of(session, principal.org_id)
    return SubscriptionList(
        items=[SubscriptionOut.model_validate(s, from_attributes=True) for s in found]
    )


@router.get(
    "/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Read one webhook subscription",
    responses={**_COMMON, **_NOT_FOUND},
    dependencies=[Depends(require(Permission.subscriptions))],
)
async def read_subscription(
    request: Request, subscription_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> SubscriptionOut:
    found = await service.get(session, _actor(request, principal), subscription_id)
    return SubscriptionOut.model_validate(found, from_attributes=True)


@router.delete(
    "/{subscription_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a webhook subscription (deliveries stop)",
    responses={**_COMMON, **_NOT_FOUND},
    dependencies=[Depends(require(Permission.subscriptions))],
)
async def delete_subscription(
    request: Request, subscription_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Response:
    await service.delete(session, _actor(request, principal), subscription_id)
    return Response(status_code=204)


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryPage,
    summary="Every delivery attempt of a subscription, newest first",
    responses={**_COMMON, **_NOT_FOUND},
    dependencies=[Depends(require(Permission.subscriptions))],
)
async def deliveries(
    request: Request,
    subscription_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> DeliveryPage:
    found = await service.get(session, _actor(request, principal), subscription_id)
    rows = await repository.attempts_of(session, found.id, limit=limit, before=before)
    items = [
        DeliveryOut(
            id=a.id,
            message_id=m.id,
            event_sequence=m.event_sequence,
            attempt=a.attempt,
            at=a.at,
            outcome=a.outcome,
            status_code=a.status_code,
            error=a.error,
            duration_ms=a.duration_ms,
        )
        for a, m in rows
    ]
    return DeliveryPage(items=items, next_before=items[-1].id if len(items) == limit else None)
