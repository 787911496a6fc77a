"""Registering organisations and their machine clients; exchanging credentials for tokens."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import Conflict, LookoutError, NotAuthenticated
from lookout.orgs import repository, security
from lookout.orgs.models import Client, Organisation, OrgKind

GSS_CODE = re.compile(r"^[EWSN][0-9]{8}$")
ORG_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")


async def create_org(
    session: AsyncSession,
    actor: Actor,
    *,
    org_id: str,
    name: str,
    kind: OrgKind,
    la_code: str | None = None,
    source: str | None = None,
    school_urn: str | None = None,
) -> Organisation:
    if not ORG_ID.match(org_id):
        raise LookoutError("organisation id: lowercase letters, digits and '-', 2 to 64 characters")
    if la_code is not None and not GSS_CODE.match(la_code):
        raise LookoutError("--la must be a GSS code such as E09000012")
    if kind is OrgKind.children_services and la_code is None:
        raise LookoutError(
            "a children's services organisation needs --la (its local authority's GSS code)"
        )
    if kind is OrgKind.agency and not source:
        raise LookoutError("an agency needs --source (the CloudEvents source URI it publishes as)")
    if kind is not OrgKind.agency and source:
        raise LookoutError("only agencies publish: --source is for --kind agency")
    if kind is OrgKind.school and not (school_urn and re.fullmatch(r"[0-9]{6}", school_urn)):
        raise LookoutError("a school needs --school-urn (its six-digit URN)")
    if await repository.get_org(session, org_id) is not None:
        raise Conflict(f"organisation {org_id!r} already exists")
    if source and await repository.org_with_source(session, source) is not None:
        raise Conflict(f"source {source!r} is already registered to another organisation")
    org = Organisation(
        id=org_id, name=name, kind=kind.value, la_code=la_code, source=source, school_urn=school_urn
    )
    session.add(org)
    await session.flush()
    await record(
        session,
        actor,
        [Entry(Action.org_created, "organisation", org_id, details={"kind": kind.value})],
    )
    return org


async def create_client(session: AsyncSession, actor: Actor, org_id: str) -> tuple[str, str]:
    """A new client for ``org_id``: returns (client_id, secret); only the secret's hash is kept."""
    if await repository.get_org(session, org_id) is None:
        raise LookoutError(
            f"no organisation {org_id!r}: create it first with `lookout orgs create`"
        )
    client_id = f"{org_id}.{secrets.token_hex(6)}"
    secret = security.new_secret()
    session.add(Client(id=client_id, org_id=org_id, secret_hash=security.hash_secret(secret)))
    await session.flush()
    await record(
        session,
        actor,
        [Entry(Action.client_created, "client", client_id, details={"org_id": org_id})],
    )
    return client_id, secret


async def rotate_client(session: AsyncSession, actor: Actor, client_id: str) -> str:
    """A new secret for an active client; only its hash is kept and the old one stops working."""
    found = await repository.active_client(session, client_id)
    if found is None:
        raise LookoutError(f"no active client {client_id!r}: see `lookout clients create`")
    client, _ = found
    secret = security.new_secret()
    client.secret_hash = security.hash_secret(secret)
    await session.flush()
    await record(
        session,
        actor,
        [Entry(Action.client_rotated, "client", client.id, details={"org_id": client.org_id})],
    )
    return secret


async def issue_token(
    session: AsyncSession, actor: Actor, client_id: str, secret: str, key: str, ttl: timedelta
) -> str:
    found = await repository.active_client(session, client_id)
    if found is None:
        security.verify_secret(security.DUMMY_HASH, secret)
    if found is None or not security.verify_secret(found[0].secret_hash, secret):
        await record(
            session, actor, [Entry(Action.token_denied, "client", client_id[:64], outcome="denied")]
        )
        raise NotAuthenticated("unknown client or wrong secret")
    client, org = found
    principal = security.Principal(client_id=client.id, org_id=org.id, org_kind=org.kind)
    await record(
        session,
        Actor(org_id=org.id, client_id=client.id, request_id=actor.request_id),
        [Entry(Action.token_issued, "client", client.id)],
    )
    return security.issue_token(principal, key, ttl)
