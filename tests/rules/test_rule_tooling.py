"""Rule tooling from the outside: validate, test, apply (hot reload), history, backtest."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.cli.test_cli import lookout
from tests.conftest import RunningWorker
from tests.e2e.test_publish_to_alert import count, nlgn_scenario, publish, wait_for
from tests.factories import register_orgs

from lookout.alerts.models import Alert
from lookout.audit.models import AuditRecord
from lookout.rules.models import RuleSet
from lookout.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.asyncio
RULE_ONE = "adult-substance-misuse-ed.yaml"


def rules_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    shutil.copytree(PROJECT_ROOT / "rules", folder, ignore=shutil.ignore_patterns("*.md"))
    return folder


def edit(path: Path, **changes: object) -> None:
    content = yaml.safe_load(path.read_text())
    content.update(changes)
    path.write_text(yaml.safe_dump(content, sort_keys=False))


async def test_validate_names_the_file_and_line(settings: Settings, tmp_path: Path) -> None:
    folder = rules_copy(tmp_path)
    broken = folder / RULE_ONE
    broken.write_text(broken.read_text().replace("severity: high", "severity: apocalyptic"))
    result = lookout(settings, "rules", "validate", str(folder))
    assert result.returncode == 1
    line = next(
        n for n, text in enumerate(broken.read_text().splitlines(), 1) if "apocalyptic" in text
    )
    assert f"{broken}:{line}: severity:" in result.stderr
    assert lookout(settings, "rules", "validate").returncode == 0


async def test_rules_test_reports_each_case(settings: Settings, tmp_path: Path) -> None:
    ok = lookout(settings, "rules", "test")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  adult-substance-misuse-ed: an 18-year-old does not" in ok.stdout
    folder = rules_copy(tmp_path)
    edit(folder / RULE_ONE, household=[])  # now fires with no child at home: cases fail
    failing = lookout(settings, "rules", "test", str(folder))
    assert failing.returncode == 1
    assert "FAIL  adult-substance-misuse-ed: an 18-year-old does not" in failing.stdout


async def test_apply_switches_running_workers_and_refuses_untested_sets(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    worker: RunningWorker,
    tmp_path: Path,
) -> None:
    await register_orgs(sessions)
    folder = rules_copy(tmp_path)
    edit(folder / RULE_ONE, severity="urgent")
    applied = lookout(
        settings,
        "rules",
        "apply",
        str(folder),
        "--by",
        "Jo Lead",
        "--reason",
        "raise severity after review",
    )
    assert applied.returncode == 0, applied.stderr
    again = lookout(settings, "rules", "apply", str(folder), "--by", "Jo Lead", "--reason", "again")
    assert "unchanged" in again.stdout

    broken = rules_copy(tmp_path / "broken")
    edit(broken / RULE_ONE, household=[])
    refused = lookout(
        settings, "rules", "apply", str(broken), "--by", "Jo Lead", "--reason", "oops"
    )
    assert refused.returncode == 1
    assert "rule tests failed" in refused.stderr

    async def switched() -> bool:
        assert worker.worker is not None
        return worker.worker.rule_set_id is not None

    await wait_for(switched, within_s=40)
    await publish(settings, nlgn_scenario())
    await wait_for(lambda: count(sessions, Alert))
    async with sessions() as session:
        alert = (await session.execute(select(Alert))).scalar_one()
        sets = (await session.execute(select(RuleSet))).scalars().all()
        audited = (
            (
                await session.execute(
                    select(AuditRecord).where(AuditRecord.action == "operator:rule_set:applied")
                )
            )
            .scalars()
            .all()
        )
    assert alert.severity == "urgent"
    assert alert.rule_version == next(
        r["version"] for r in sets[0].rules if r["id"] == alert.rule_id
    )
    assert len(sets) == 1
    assert len(audited) == 1
    assert audited[0].end_user == "Jo Lead"
    history = lookout(settings, "rules", "history")
    assert "raise severity after review" in history.stdout

    now = datetime.now(UTC)
    backtest = lookout(
        settings,
        "rules",
        "backtest",
        str(PROJECT_ROOT / "rules" / RULE_ONE),
        "--from",
        (now - timedelta(days=7)).strftime("%Y-%m-%d"),
        "--to",
        (now + timedelta(days=1)).strftime("%Y-%m-%d"),
    )
    assert backtest.returncode == 0, backtest.stderr
    assert "would raise 1 alert(s)" in backtest.stdout
    assert "E09000012  high    1" in backtest.stdout
    assert "0 new, 0 no longer raised" in backtest.stdout
    assert await count(sessions, Alert) == 1  # the backtest raised nothing
