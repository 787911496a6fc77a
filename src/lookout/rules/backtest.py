"""``lookout rules backtest``: what a new or changed rule would have raised on stored
history, compared with the live version, without raising anything."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from lookout.db import create_engine, session_factory
from lookout.ingest import repository as ingest
from lookout.rules import repository
from lookout.rules.model import Rule, load_rule_file, load_rules
from lookout.rules.replay import ReplayedAlert, replay
from lookout.rules.service import rules_of
from lookout.settings import Settings


async def _load(
    settings: Settings, since: datetime, until: datetime
) -> tuple[list[dict[str, object]], list[Rule]]:
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            events = await ingest.stored_cloudevents(session, since, until)
            live = await repository.latest(session)
    finally:
        await engine.dispose()
    return events, rules_of(live) if live else load_rules(settings.rules_dir)


def _summary(alerts: list[ReplayedAlert]) -> Counter[tuple[str, str]]:
    return Counter((a.household[1], a.severity) for a in alerts)


def backtest(
    settings: Settings, rule_file: Path, since: datetime, until: datetime, *, samples: int = 3
) -> str:
    candidate = load_rule_file(rule_file)
    window = timedelta(days=candidate.max_window_days)
    events, live_rules = asyncio.run(_load(settings, since - window, until))
    horizon = until - since
    new = replay(events, [candidate], now=until, horizon=horizon)
    current = [r for r in live_rules if r.id == candidate.id]
    old = replay(events, current, now=until, horizon=horizon) if current else []
    lines = [
        f"Backtest of {candidate.id} (version {candidate.version[:12]})"
        f" over {since:%Y-%m-%d} .. {until:%Y-%m-%d}",
        f"{len(events)} stored events replayed; nothing was raised or changed.",
        "",
        f"would raise {len(new)} alert(s):",
    ]
    lines += [f"  {la}  {severity:<7} {n}" for (la, severity), n in sorted(_summary(new).items())]
    if current:
        old_keys = {(a.household, a.recipient_key) for a in old}
        new_keys = {(a.household, a.recipient_key) for a in new}
        lines += [
            "",
            f"compared with the live version {current[0].version[:12]}: {len(old)} alert(s); "
            f"{len(new_keys - old_keys)} new, {len(old_keys - new_keys)} no longer raised",
        ]
    else:
        lines += ["", "no live version of this rule: every alert above is new"]
    for alert in new[:samples]:
        lines += [
            "",
            "sample explanation:",
            orjson.dumps(alert.explanation, option=orjson.OPT_INDENT_2).decode(),
        ]
    return "\n".join(lines)
