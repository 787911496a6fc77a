"""SQL for organisations and clients."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.orgs.models import Client, Organisation


async def get_org(session: AsyncSession, org_id: str) -> Organisation | None:
    return await session.get(Organisation, org_id)


async def list_orgs(session: AsyncSession) -> list[Organisation]:
    return list((await session.execute(select(Organisation).order_by(Organisation.id))).scalars())


async def org_with_source(session: AsyncSession, source: str) -> Organisation | None:
    rows = await session.execute(select(Organisation).where(Organisation.source == source))
    return rows.scalar_one_or_none()


async def active_client(
    session: AsyncSession, client_id: str
) -> tuple[Client, Organisation] | None:
    rows = await session.execute(
        select(Client, Organisation)
        .join(Organisation, Organisation.id == Client.org_id)
        .where(Client.id == client_id, Client.disabled_at.is_(None))
    )
    row = rows.one_or_none()
    return (row[0], row[1]) if row else None
