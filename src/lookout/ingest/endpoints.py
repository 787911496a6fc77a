"""Publishers and operators on HTTP: ``POST /v1/events`` (HTTPS ingest, the CloudEvents HTTP
binding) and ``/v1/rejections`` (rejected events, replay).

HTTPS ingest validates each event exactly as the worker does (``validate_document`` with
the catalogue loaded once in the app's lifespan), checks that the caller's agency is the
event's ``source``, and publishes the accepted ones to the events topic keyed by
``subject``. The worker then handles them like any other message (dedupe, graph, rules),
so the answer's ``accepted`` means "on the log", not "alert raised".
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from lookout import metrics
from lookout.api.deps import ActorDep, PrincipalDep, SessionDep, SettingsDep
from lookout.api.permissions import DENIED_RESPONSES, Permission, allowed, require
from lookout.audit.actions import Action
from lookout.audit.service import Entry, record
from lookout.errors import LookoutError
from lookout.ingest import rejections
from lookout.ingest.catalogue import Catalogue
from lookout.ingest.validation import TOO_DEEP, Invalid, Reason, Valid, validate_document
from lookout.orgs import repository as orgs

router = APIRouter(prefix="/v1", tags=["publishers"])

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class PayloadTooLarge(LookoutError):
    status, title = 413, "Payload too large"


class UnsupportedMediaType(LookoutError):
    status, title = 415, "Unsupported media type"


class EventResult(BaseModel):
    index: int = Field(description="Position in the request (0 for a single event)")
    id: str | None = Field(description="The event's id, when it has one")
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(default=None, description="The rejection reason code")
    detail: str | None = None


class IngestResult(BaseModel):
    accepted: int
    rejected: int
    results: list[EventResult]


_COMMON: dict[int | str, dict[str, Any]] = {
    400: {"description": "Missing X-Lookout-End-User / X-Lookout-Purpose, or not JSON"},
    **DENIED_RESPONSES,
}


@router.post(
    "/events",
    response_model=IngestResult,
    summary="Publish CloudEvents over HTTPS (structured or batch mode)",
    description=(
        f"Body: one event as `{STRUCTURED}` or a JSON array of events as `{BATCH}`. Each "
        "event is validated like a Kafka message and must have your agency's registered "
        "`source`; the answer lists, per event, accepted or rejected with the reason code. "
        "Over the size or count limit: 413."
    ),
    responses={
        **_COMMON,
        413: {"description": "The body or the batch is over the limit"},
        415: {"description": "Not a CloudEvents JSON media type"},
    },
    dependencies=[Depends(require(Permission.events_publish))],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                STRUCTURED: {"schema": {"type": "object"}},
                BATCH: {"schema": {"type": "array", "items": {"type": "object"}}},
            },
        }
    },
)
async def publish_events(
    request: Request, session: SessionDep, actor: ActorDep, settings: SettingsDep
) -> IngestResult:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in (STRUCTURED, BATCH):
        raise UnsupportedMediaType(f"send {STRUCTURED} (one event) or {BATCH} (an array)")
    declared = request.headers.get("content-length")
    limit = settings.ingest_max_request_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is over {limit} bytes: split it")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes: split it")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise LookoutError(f"the body is not JSON: {exc.msg} at position {exc.pos}") from None
    if media == BATCH:
        if not isinstance(document, list):
            raise LookoutError(f"{BATCH} needs a JSON array of events")
        if len(document) > settings.ingest_max_batch_events:
            raise PayloadTooLarge(
                f"{len(document)} events; at most {settings.ingest_max_batch_events} per request"
            )
        events: list[Any] = document
    else:
        events = [document]
    assert actor.org_id is not None
    org = await orgs.get_org(session, actor.org_id)
    own_source = org.source if org is not None else None
    catalogue: Catalogue = request.app.state.catalogue
    now = datetime.now(UTC)
    results: list[EventResult] = []
    to_send: list[tuple[bytes, bytes]] = []
    for index, event in enumerate(events):
        outcome: Valid | Invalid
        try:
            raw = orjson.dumps(event)
        except orjson.JSONEncodeError:  # found by the fuzz test: it was a 500
            raw, outcome = b"", Invalid(Reason.invalid_envelope, TOO_DEEP)
        else:
            outcome = (
                Invalid(Reason.too_large, f"the event is over {settings.max_event_bytes} bytes")
                if len(raw) > settings.max_event_bytes
                else validate_document(
                    event,
                    catalogue=catalogue,
                    now=now,
                    max_skew=timedelta(seconds=settings.max_future_skew_s),
                    raw=raw,
                )
            )
        if not isinstance(outcome, Invalid) and outcome.event.source != own_source:
            outcome = Invalid(
                Reason.unknown_source,
                "source is not the one registered to your agency",
                outcome.event.source,
                outcome.event.id,
            )
        if isinstance(outcome, Invalid):
            metrics.HTTPS_INGEST.labels(outcome.reason.value).inc()
            results.append(
                EventResult(
                    index=index,
                    id=outcome.event_id,
                    status="rejected",
                    reason=outcome.reason.value,
                    detail=outcome.detail,
                )
            )
            continue
        metrics.HTTPS_INGEST.labels("accepted").inc()
        results.append(EventResult(index=index, id=outcome.event.id, status="accepted"))
        to_send.append((raw, outcome.event.subject.encode()))
    producer: AIOKafkaProducer = request.app.state.producer
    sent = [await producer.send(settings.events_topic, value=raw, key=key) for raw, key in to_send]
    for delivery in sent:
        await delivery  # raises (-> 503, nothing claimed accepted) if the broker did not ack
    accepted = len(to_send)
    await record(
        session,
        actor,
        [
            Entry(
                Action.event_published,
                "event",
                None,
                details={"accepted": accepted, "rejected": len(results) - accepted},
            )
        ],
    )
    return IngestResult(accepted=accepted, rejected=len(results) - accepted, results=results)


# Rejections ------------------------------------------------------------------------


class RejectionOut(BaseModel):
    id: uuid.UUID
    reason: str = Field(description="Reason code (see schemas/README.md)")
    detail: str
    source: str | None
    event_id: str | None
    event_type: str | None
    created_at: datetime


class RejectionPage(BaseModel):
    items: list[RejectionOut]
    next_before: str | None = Field(description="Pass as `before` for the next (older) page")


class ReplayOut(BaseModel):
    id: uuid.UUID
    republished_to: str


@router.get(
    "/rejections",
    response_model=RejectionPage,
    summary="Rejected events: an agency sees its own, operators see all",
    responses=_COMMON,
    dependencies=[Depends(require(Permission.rejections_read))],
)
async def list_rejections(
    session: SessionDep,
    actor: ActorDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[uuid.UUID | None, Query()] = None,
    reason: Annotated[Reason | None, Query()] = None,
) -> RejectionPage:
    source = await _own_source(session, principal.org_id, principal.org_kind)
    rows = await rejections.list_rejections(
        session,
        actor,
        source=source,
        limit=limit,
        before=before,
        reason=reason.value if reason else None,
    )
    items = [RejectionOut.model_validate(r, from_attributes=True) for r in rows]
    return RejectionPage(
        items=items, next_before=str(items[-1].id) if len(items) == limit else None
    )


async def _own_source(session: SessionDep, org_id: str, kind: str) -> str | None:
    """None means every source (operators); an agency is held to its registered one."""
    if allowed(kind, Permission.rejections_all):
        return None
    org = await orgs.get_org(session, org_id)
    # An agency always has a source; "" matches nothing if it somehow has not.
    return (org.source if org is not None else None) or ""


@router.post(
    "/rejections/{rejection_id}/replay",
    response_model=ReplayOut,
    summary="Republish a rejected event's original bytes to the events topic (operators)",
    responses={**_COMMON, 404: {"description": "No such rejection"}},
    dependencies=[Depends(require(Permission.rejections_replay))],
)
async def replay(
    request: Request, rejection_id: uuid.UUID, session: SessionDep, actor: ActorDep
) -> ReplayOut:
    settings = request.app.state.settings
    producer: AIOKafkaProducer = request.app.state.producer
    await rejections.replay(session, actor, producer, settings.events_topic, rejection_id)
    return ReplayOut(id=rejection_id, republished_to=settings.events_topic)
