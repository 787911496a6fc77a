"""Webhook subscriptions: creating them (with a Standard Webhooks secret), refusing private
targets, listing deliveries; the thin payload every webhook and SSE event carries."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import socket
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.delivery import repository
from lookout.delivery.models import AlertEvent, Subscription
from lookout.errors import LookoutError, NotFound


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return not ip.is_global or ip.is_multicast


async def refused_target(url: str, *, allow_private: bool) -> str | None:
    """Why ``url`` may not receive webhooks (None if it may).

    Private, loopback, link-local and other non-global addresses are refused unless the
    operator allows them (``LOOKOUT_WEBHOOK_ALLOW_PRIVATE``); a host name is resolved and
    every address it has is checked. The dispatcher checks again before each attempt, so a
    name that later resolves to a private address is refused then too."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the URL must be http(s) with a host"
    if parts.username or parts.password:
        return "the URL must not carry credentials"
    if allow_private:
        return None
    host = parts.hostname
    try:
        addresses = [host] if _is_ip(host) else await _resolve(host, parts.port)
    except OSError:
        return "the host name does not resolve"
    if not addresses or any(_private(a) for a in addresses):
        return "the URL resolves to a private, loopback or link-local address"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _resolve(host: str, port: int | None) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def create(
    session: AsyncSession, actor: Actor, url: str, *, allow_private: bool
) -> tuple[Subscription, str]:
    assert actor.org_id is not None
    reason = await refused_target(url, allow_private=allow_private)
    if reason is not None:
        raise LookoutError(f"webhook target refused: {reason}")
    secret = new_secret()
    subscription = await repository.add_subscription(
        session,
        {
            "id": uuid.uuid4(),
            "org_id": actor.org_id,
            "url": url,
            "secret": secret,
            # Only changes from now on: earlier ones are read with GET /v1/alerts.
            "cursor": await repository.last_event_sequence(session, actor.org_id),
        },
    )
    await record(
        session, actor, [Entry(Action.subscription_created, "subscription", str(subscription.id))]
    )
    return subscription, secret


async def get(session: AsyncSession, actor: Actor, subscription_id: uuid.UUID) -> Subscription:
    assert actor.org_id is not None
    subscription = await repository.subscription_of(session, actor.org_id, subscription_id)
    if subscription is None:
        await record(
            session,
            actor,
            [Entry(Action.request_denied, "subscription", str(subscription_id), "not_found")],
        )
        raise NotFound("no such subscription for your organisation")
    return subscription


async def delete(session: AsyncSession, actor: Actor, subscription_id: uuid.UUID) -> None:
    subscription = await get(session, actor, subscription_id)
    now = datetime.now(UTC)
    subscription.deleted_at = now
    if subscription.disabled_at is None:
        subscription.disabled_at, subscription.disabled_reason = now, "deleted"
    await session.flush()
    await record(
        session, actor, [Entry(Action.subscription_deleted, "subscription", str(subscription.id))]
    )


def payload(event: AlertEvent) -> dict[str, Any]:
    """The thin payload (Standard Webhooks shape): ids only, never personal data."""
    return {
        "type": event.type,
        "timestamp": event.created_at.isoformat(),
        "data": {
            "alert_id": str(event.alert_id),
            "alert_sequence": event.alert_sequence,
            "sequence": event.sequence,
        },
    }
