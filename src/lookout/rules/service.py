"""Applying rule sets (validated and tested first) and loading the live one."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import LookoutError
from lookout.rules import repository
from lookout.rules.model import Rule, compile_rule
from lookout.rules.models import RuleSet


def rules_of(rule_set: RuleSet) -> list[Rule]:
    """Compile a stored rule set (its content was validated when it was applied)."""
    return [compile_rule(r["content"]) for r in rule_set.rules]


async def apply(
    session: AsyncSession, actor: Actor, rules: Sequence[Rule], *, applied_by: str, reason: str
) -> RuleSet | None:
    """Store ``rules`` as the live set and notify the workers; None if nothing changed.

    The caller has validated the files and run their test cases."""
    if not reason.strip() or not applied_by.strip():
        raise LookoutError("say who applies the rules (--by) and why (--reason)")
    content = [
        {"id": r.id, "version": r.version, "content": r.content}
        for r in sorted(rules, key=lambda r: r.id)
    ]
    current = await repository.latest(session)
    if current is not None and [(r["id"], r["version"]) for r in current.rules] == [
        (r["id"], r["version"]) for r in content
    ]:
        return None
    rule_set = await repository.insert(session, applied_by, reason, content)
    await repository.notify(session, rule_set.id)
    await record(
        session,
        actor,
        [
            Entry(
                Action.rules_applied,
                "rule_set",
                str(rule_set.id),
                details={"versions": {r["id"]: r["version"] for r in content}, "by": applied_by},
            )
        ],
    )
    return rule_set
