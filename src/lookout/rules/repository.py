"""SQL for applied rule sets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.rules.models import RuleSet

CHANNEL = "lookout_rules"


async def latest(session: AsyncSession) -> RuleSet | None:
    rows = await session.execute(select(RuleSet).order_by(RuleSet.id.desc()).limit(1))
    return rows.scalar_one_or_none()


async def history(session: AsyncSession, limit: int = 50) -> list[RuleSet]:
    rows = await session.execute(select(RuleSet).order_by(RuleSet.id.desc()).limit(limit))
    return list(rows.scalars())


async def insert(
    session: AsyncSession, applied_by: str, reason: str, rules: list[dict[str, Any]]
) -> RuleSet:
    rule_set = RuleSet(applied_by=applied_by, reason=reason, rules=rules)
    session.add(rule_set)
    await session.flush()
    return rule_set


async def notify(session: AsyncSession, rule_set_id: int) -> None:
    """Tell every listening worker, when this transaction commits, that a new set is live."""
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": CHANNEL, "payload": str(rule_set_id)},
    )
