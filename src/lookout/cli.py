"""The ``lookout`` command: run the stack, operate it, publish events.

Connection settings come from ``LOOKOUT_*`` variables, or else from ``.lookout/dev.env``
written by a running ``lookout run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import orjson
import typer
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit.service import Actor
from lookout.errors import LookoutError
from lookout.logging import configure_logging
from lookout.orgs.models import OrgKind
from lookout.settings import Settings, get_settings

app = typer.Typer(
    help="Lookout: information sharing and risk triggers for safeguarding.", no_args_is_help=True
)
orgs_app = typer.Typer(help="Register organisations.", no_args_is_help=True)
clients_app = typer.Typer(help="Register machine clients of organisations.", no_args_is_help=True)
audit_app = typer.Typer(help="Seal and verify the audit trail.", no_args_is_help=True)
retention_app = typer.Typer(help="Apply the retention policy.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
rules_app = typer.Typer(help="Write and test trigger rules.", no_args_is_help=True)
offsets_app = typer.Typer(
    help="See and move the workers' stored offsets.", invoke_without_command=True
)
app.add_typer(offsets_app, name="offsets")
app.add_typer(clients_app, name="clients")
app.add_typer(rules_app, name="rules")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")
dlq_app = typer.Typer(
    help="Rejected events (the dead-letter queue): list and replay them (operators).",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")
identity_app = typer.Typer(
    help="Review possible matches and undo wrong merges (operators).", no_args_is_help=True
)
app.add_typer(identity_app, name="identity")

T = TypeVar("T")
OPERATOR = Actor(client_id="lookout-cli", purpose="administration")


def _settings(*need: str) -> Settings:
    settings = get_settings()
    missing = [n for n in need if not getattr(settings, n)]
    if missing:
        names = ", ".join(f"LOOKOUT_{n.upper()}" for n in missing)
        typer.echo(
            f"error: {names} not set and no running stack found (.lookout/dev.env): "
            "start one with `make run`",
            err=True,
        )
        raise typer.Exit(2)
    return settings


def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one committed transaction (the CLI is an edge, like a request)."""
    from lookout.db import create_engine, session_factory

    async def main() -> T:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with session_factory(engine)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except LookoutError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


@app.command()
def run(
    workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes")] = 1,
    api_workers: Annotated[
        int | None,
        typer.Option(min=1, max=16, help="API processes (default: LOOKOUT_API_WORKERS, 1)"),
    ] = None,
) -> None:
    """Start Lookout locally: embedded PostgreSQL and broker unless configured, migrations,
    topics, the API and the workers, supervised until Ctrl-C."""
    from lookout.embedded.stack import run_stack

    configure_logging(json=False)
    if api_workers is not None:  # the supervised `lookout api` reads it from its environment
        os.environ["LOOKOUT_API_WORKERS"] = str(api_workers)
    raise typer.Exit(run_stack(get_settings(), workers=workers))


@app.command()
def api() -> None:
    """Serve the HTTP API (uvicorn; LOOKOUT_API_WORKERS processes)."""
    import uvicorn

    from lookout.api.app import create_app, multiprocess_metrics
    from lookout.runtime import tune_gc

    settings = _settings("database_url", "kafka_bootstrap_servers")
    configure_logging(settings.log_level, settings.log_json)
    if settings.api_workers == 1:
        application = create_app(settings)
        tune_gc()
        uvicorn.run(
            application,
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            access_log=False,
        )
        return
    # Each worker process builds the app from the same environment (``app_from_env``).
    with multiprocess_metrics():
        uvicorn.run(
            "lookout.api.app:app_from_env",
            factory=True,
            workers=settings.api_workers,
            host=settings.api_host,
            port=settings.api_port,
            log_level="warning",
            access_log=False,
        )


@app.command()
def worker() -> None:
    """Consume events and raise alerts (one member of the consumer group)."""
    from lookout.worker import run as run_worker

    settings = _settings("database_url", "kafka_bootstrap_servers")
    configure_logging(settings.log_level, settings.log_json)
    run_worker(settings)


@app.command()
def sealer() -> None:
    """Chain committed audit records and sign checkpoints, every few seconds (one process)."""
    from lookout.audit.sealer import run_sealer

    settings = _settings("database_url")
    configure_logging(settings.log_level, settings.log_json)
    asyncio.run(run_sealer(settings))


@audit_app.command("seal")
def audit_seal(
    checkpoint: Annotated[bool, typer.Option(help="Sign a checkpoint of the new head")] = True,
) -> None:
    """One sealing pass: chain every record committed so far, then sign a checkpoint."""
    from lookout.audit.sealer import seal_once
    from lookout.db import create_engine

    settings = _settings("database_url")

    async def main() -> Any:
        engine = create_engine(settings.database_url, pool_size=2)
        try:
            return await seal_once(engine, settings, force_checkpoint=checkpoint)
        finally:
            await engine.dispose()

    result = asyncio.run(main())
    typer.echo(
        f"sealed {result.sealed} record(s); chain head at seq {result.head_seq}"
        + (f"; checkpoint signed at seq {result.checkpoint_seq}" if result.checkpoint_seq else "")
    )
    if result.waiting:
        typer.echo("older transactions are still open: run again to seal the rest", err=True)
        raise typer.Exit(3)


@audit_app.command("verify")
def audit_verify(
    json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Check every link of the hash chain and every signed checkpoint; name the first
    bad record. Exit code 0 when intact, 1 when not."""
    from lookout.audit import signing
    from lookout.audit.actions import Action
    from lookout.audit.service import Entry, record
    from lookout.audit.verify import Report, verify

    settings = _settings("database_url")

    async def work(session: AsyncSession) -> Report:
        report = await verify(
            session, signing.verify_key(settings), signing.checkpoint_dir(settings)
        )
        await record(
            session,
            OPERATOR,
            [
                Entry(
                    Action.audit_verified_cli,
                    "audit",
                    None,
                    outcome="ok" if report.ok else "failed",
                    details={
                        "records_checked": report.records_checked,
                        "first_bad_seq": report.first_bad_seq,
                        "bad_checkpoint_seq": report.bad_checkpoint_seq,
                    },
                )
            ],
        )
        return report

    report = _in_transaction(settings, work)
    if json:
        typer.echo(orjson.dumps(report.__dict__).decode())
    elif report.ok:
        typer.echo(
            f"audit trail intact: {report.records_checked} record(s), sealed through seq "
            f"{report.sealed_through} ({report.unsealed} not sealed yet), "
            f"{report.checkpoints_checked} signed checkpoint(s)"
        )
    else:
        where = (
            f"first bad record: seq {report.first_bad_seq}"
            if report.first_bad_seq is not None
            else f"bad checkpoint at seq {report.bad_checkpoint_seq}"
        )
        typer.echo(f"AUDIT TRAIL FAILS VERIFICATION: {where}: {report.problem}", err=True)
    raise typer.Exit(0 if report.ok else 1)


@retention_app.command("run")
def retention_run() -> None:
    """Purge personal data past its retention period (docs/retention.md), recording what
    was purged in the audit trail."""
    from lookout.db import create_engine, session_factory
    from lookout.retention.service import Purged, run_retention

    settings = _settings("database_url")

    async def main() -> Purged:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await run_retention(session_factory(engine), settings, datetime.now(UTC))
        finally:
            await engine.dispose()

    purged = asyncio.run(main())
    typer.echo(
        f"purged: {purged.events} event payload(s), {purged.alerts} closed alert(s), "
        f"{purged.rejections} rejection(s) (recorded in the audit trail)"
    )


@app.command()
def dispatcher() -> None:
    """Deliver webhooks and escalate overdue urgent alerts (one or more per deployment)."""
    from lookout.delivery.dispatcher import run as run_dispatcher

    settings = _settings("database_url")
    configure_logging(settings.log_level, settings.log_json)
    run_dispatcher(settings)


@app.command()
def migrate() -> None:
    """Apply database migrations (Alembic) up to the newest."""
    from lookout.migrations import upgrade

    upgrade(_settings("database_url").database_url)
    typer.echo("database is up to date")


@orgs_app.command("create")
def orgs_create(
    org_id: Annotated[str, typer.Argument(metavar="ID", help="A short stable id, e.g. hackney-cs")],
    name: Annotated[str, typer.Option(help="Display name")],
    kind: Annotated[OrgKind, typer.Option(help="What the organisation does in Lookout")],
    la: Annotated[str | None, typer.Option(help="Local authority GSS code, e.g. E09000012")] = None,
    source: Annotated[str | None, typer.Option(help="Agencies: the CloudEvents source URI")] = None,
    school_urn: Annotated[str | None, typer.Option(help="Schools: the six-digit URN")] = None,
) -> None:
    """Register an organisation."""
    from lookout.orgs import service

    settings = _settings("database_url")
    _in_transaction(
        settings,
        lambda s: service.create_org(
            s,
            OPERATOR,
            org_id=org_id,
            name=name,
            kind=kind,
            la_code=la,
            source=source,
            school_urn=school_urn,
        ),
    )
    typer.echo(f"organisation {org_id} created")


@orgs_app.command("list")
def orgs_list() -> None:
    """List organisations."""
    from lookout.orgs import repository

    settings = _settings("database_url")
    for org in _in_transaction(settings, repository.list_orgs):
        typer.echo(f"{org.id}\t{org.kind}\t{org.la_code or '-'}\t{org.source or '-'}\t{org.name}")


@clients_app.command("create")
def clients_create(
    org: Annotated[str, typer.Option(help="The organisation the client acts for")],
    json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create a machine client; its secret is printed once and only its hash is kept."""
    from lookout.orgs import service

    settings = _settings("database_url")
    client_id, secret = _in_transaction(settings, lambda s: service.create_client(s, OPERATOR, org))
    if json:
        typer.echo(orjson.dumps({"client_id": client_id, "client_secret": secret}).decode())
    else:
        typer.echo(
            f"client_id:     {client_id}\nclient_secret: {secret}\n(the secret is not shown again)"
        )


@clients_app.command("rotate")
def clients_rotate(
    client_id: Annotated[str, typer.Argument(metavar="CLIENT_ID", help="The client to rotate")],
    json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Give a client a new secret, printed once; the old secret stops working at once
    (tokens already issued with it run out within LOOKOUT_TOKEN_TTL_S)."""
    from lookout.orgs import service

    settings = _settings("database_url")
    secret = _in_transaction(settings, lambda s: service.rotate_client(s, OPERATOR, client_id))
    if json:
        typer.echo(orjson.dumps({"client_id": client_id, "client_secret": secret}).decode())
    else:
        typer.echo(
            f"client_id:     {client_id}\nclient_secret: {secret}\n(the secret is not shown again)"
        )


def _read_events(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    stripped = text.strip()
    if stripped.startswith("["):
        loaded = orjson.loads(stripped)
        return list(loaded)
    try:
        return [orjson.loads(stripped)]
    except orjson.JSONDecodeError:
        return [orjson.loads(line) for line in stripped.splitlines() if line.strip()]


@app.command()
def publish(
    file: Annotated[
        str, typer.Argument(help="A JSON event, a JSON array, or NDJSON; '-' for stdin")
    ],
) -> None:
    """Validate events against the contract, then publish them keyed by their subject."""
    from lookout.ingest.catalogue import Catalogue
    from lookout.ingest.validation import Invalid, validate_document
    from lookout.publisher import publish_events

    settings = _settings("kafka_bootstrap_servers")
    try:
        events = _read_events(file)
    except (OSError, orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        typer.echo(f"error: cannot read events from {file}: {exc}", err=True)
        raise typer.Exit(2) from None
    catalogue = Catalogue.load(settings.schemas_dir)
    problems = []
    for n, event in enumerate(events, 1):
        outcome = validate_document(
            event,
            catalogue=catalogue,
            now=datetime.now(UTC),
            max_skew=timedelta(seconds=settings.max_future_skew_s),
        )
        if isinstance(outcome, Invalid):
            problems.append(f"event {n}: {outcome.reason.value}: {outcome.detail}")
    if problems:
        typer.echo("nothing published:\n" + "\n".join(problems), err=True)
        raise typer.Exit(1)
    asyncio.run(publish_events(settings, events))
    typer.echo(f"published {len(events)} event(s) to {settings.events_topic}")


RulesPath = Annotated[
    Path | None, typer.Argument(help="A rule file or folder (default: the configured rules folder)")
]


def _rule_files(path: Path | None) -> list[Path]:
    target = path or get_settings().rules_dir
    return [target] if target.is_file() else sorted(target.glob("*.yaml"))


@rules_app.command("validate")
def rules_validate(path: RulesPath = None) -> None:
    """Check rule files against the rule schema and compile their expressions."""
    from lookout.rules.model import RuleError, load_rule_file

    failed = 0
    for file in _rule_files(path):
        try:
            rule = load_rule_file(file)
        except RuleError as exc:
            failed += 1
            typer.echo(str(exc), err=True)
        else:
            typer.echo(f"ok  {file}  {rule.id}  version {rule.version[:12]}")
    if failed:
        raise typer.Exit(1)


@rules_app.command("schema")
def rules_schema() -> None:
    """Print the JSON Schema of a rule file (schemas/rules/rule.schema.json)."""
    from lookout.rules.model import rule_json_schema

    typer.echo(json.dumps(rule_json_schema(), indent=2, ensure_ascii=False))


@rules_app.command("test")
def rules_test(path: RulesPath = None) -> None:
    """Run every rule's test cases (rules/tests/*.yaml): given events, expected alerts."""
    from lookout.rules.model import RuleError, load_rules
    from lookout.rules.testcases import run_file

    folder = path or get_settings().rules_dir
    rules_dir = folder if folder.is_dir() else folder.parent
    try:
        rules = {r.id: r for r in load_rules(rules_dir)}
        cases = sorted((rules_dir / "tests").glob("*.yaml"))
        outcomes = [o for f in cases for o in run_file(f, rules)]
    except RuleError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for o in outcomes:
        typer.echo(f"{'PASS' if o.passed else 'FAIL'}  {o.file.stem}: {o.case}")
        if not o.passed:
            typer.echo(f"      expected {sorted(map(repr, o.expected))}")
            typer.echo(f"      got      {sorted(map(repr, o.got))}")
    untested = sorted(set(rules) - {f.stem for f in cases})
    for rule_id in untested:
        typer.echo(f"FAIL  {rule_id}: the rule has no test cases (rules/tests/{rule_id}.yaml)")
    failed = sum(not o.passed for o in outcomes) + len(untested)
    typer.echo(f"{len(outcomes) - failed + len(untested)} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _tested_rules(folder: Path) -> list[Any]:
    """Load every rule in ``folder`` and run its test cases; exit non-zero on any failure."""
    from lookout.rules.model import RuleError, load_rules
    from lookout.rules.testcases import run_file

    try:
        rules = load_rules(folder)
        by_id = {r.id: r for r in rules}
        cases = {p.stem: p for p in sorted((folder / "tests").glob("*.yaml"))}
        failed = [
            f"{o.file.stem}: {o.case}"
            for p in cases.values()
            for o in run_file(p, by_id)
            if not o.passed
        ]
    except RuleError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from None
    failed += [f"{rule_id}: no test cases" for rule_id in sorted(set(by_id) - set(cases))]
    if failed:
        typer.echo("refused: rule tests failed:\n  " + "\n  ".join(failed), err=True)
        raise typer.Exit(1)
    return rules


@rules_app.command("apply")
def rules_apply(
    path: Annotated[
        Path, typer.Argument(help="The rules folder (every *.yaml in it is the new set)")
    ],
    by: Annotated[str, typer.Option("--by", help="Who applies it")],
    reason: Annotated[str, typer.Option("--reason", help="Why")],
) -> None:
    """Validate, test and store a rule set; every running worker switches to it."""
    from lookout.rules import service

    rules = _tested_rules(path)
    settings = _settings("database_url")
    actor = Actor(client_id="lookout-cli", end_user=by[:200], purpose="rule_management")
    rule_set = _in_transaction(
        settings, lambda s: service.apply(s, actor, rules, applied_by=by, reason=reason)
    )
    if rule_set is None:
        typer.echo("unchanged: the live rule set already has these versions")
    else:
        typer.echo(
            f"rule set {rule_set.id} applied ({len(rules)} rules); workers switch within seconds"
        )


@rules_app.command("history")
def rules_history() -> None:
    """Who applied which rule versions, when and why."""
    from lookout.rules import repository

    for rule_set in _in_transaction(_settings("database_url"), repository.history):
        versions = ", ".join(f"{r['id']}@{r['version'][:12]}" for r in rule_set.rules)
        when = f"{rule_set.applied_at:%Y-%m-%d %H:%M:%S}"
        typer.echo(f"{rule_set.id}\t{when}\t{rule_set.applied_by}\t{rule_set.reason}\t{versions}")


@rules_app.command("backtest")
def rules_backtest(
    rule_file: Annotated[Path, typer.Argument(help="A new or changed rule file")],
    date_from: Annotated[
        datetime, typer.Option("--from", help="Start of the period (date or time)")
    ],
    date_to: Annotated[datetime, typer.Option("--to", help="End of the period")],
    samples: Annotated[int, typer.Option(min=0, max=20)] = 3,
) -> None:
    """Replay stored history against a rule without raising alerts: what it would raise
    (by local authority and severity), how that differs from the live version, and
    sample explanations."""
    from lookout.rules.backtest import backtest

    settings = _settings("database_url")
    typer.echo(backtest(settings, rule_file, _aware(date_from), _aware(date_to), samples=samples))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _partitions(settings: Settings) -> tuple[str, list[Any]]:
    from lookout import kafka
    from lookout.db import create_engine, session_factory
    from lookout.ingest import repository
    from lookout.ingest.offsets import PartitionView

    cluster = await kafka.cluster_id(settings.kafka_bootstrap_servers)
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            stored = await repository.all_positions(
                session, settings.consumer_group, settings.events_topic
            )
    finally:
        await engine.dispose()
    current = {p: s.next_offset for p, s in stored.items() if s.cluster_id == cluster}
    ends = await kafka.log_ends(settings.kafka_bootstrap_servers, settings.events_topic, current)
    return cluster, [PartitionView(p, stored.get(p), end) for p, end in sorted(ends.items())]


@offsets_app.callback()
def offsets_show(ctx: typer.Context) -> None:
    """Stored offset and log end per partition; flags partitions stopped beyond the log end."""
    if ctx.invoked_subcommand:
        return
    settings = _settings("database_url", "kafka_bootstrap_servers")
    cluster, views = asyncio.run(_partitions(settings))
    typer.echo(f"cluster {cluster}  topic {settings.events_topic}  group {settings.consumer_group}")
    for v in views:
        stored = "-" if v.stored is None else f"{v.stored.next_offset} ({v.stored.cluster_id})"
        flag = "  STOPPED: stored offset beyond the log end" if v.beyond_end else ""
        typer.echo(f"  partition {v.partition}: stored {stored}, log end {v.log_end}{flag}")


@offsets_app.command("resume")
def offsets_resume(
    partition: Annotated[int, typer.Option(help="The partition to move")],
    to: Annotated[str, typer.Option(help="start, end, or an offset")],
    by: Annotated[str, typer.Option("--by", help="Who decides")],
    reason: Annotated[str, typer.Option("--reason", help="Why")],
) -> None:
    """Move a partition's stored offset (audited); a stopped worker resumes from it."""
    from lookout.ingest import offsets

    settings = _settings("database_url", "kafka_bootstrap_servers")
    cluster, views = asyncio.run(_partitions(settings))
    view = next((v for v in views if v.partition == partition), None)
    if view is None:
        typer.echo(f"error: {settings.events_topic} has no partition {partition}", err=True)
        raise typer.Exit(2)
    target = {"start": 0, "end": view.log_end}.get(to)
    if target is None:
        if not to.isdigit():
            typer.echo("error: --to must be start, end or an offset", err=True)
            raise typer.Exit(2)
        target = int(to)
    actor = Actor(client_id="lookout-cli", end_user=by[:200], purpose="operations")
    moved = _in_transaction(
        settings,
        lambda s: offsets.move(
            s,
            actor,
            group_id=settings.consumer_group,
            topic=settings.events_topic,
            partition=partition,
            cluster_id=cluster,
            to=target,
            log_end=view.log_end,
            reason=reason,
        ),
    )
    typer.echo(
        f"partition {partition}: stored offset is now {moved.next_offset}; workers resume from it"
    )


@app.command()
def status() -> None:
    """One screen for an operator: lag per partition, DLQ, open alerts, last event per source."""
    from lookout.status import run as run_status

    typer.echo(run_status(_settings("database_url", "kafka_bootstrap_servers")))


@app.command()
def demo() -> None:
    """Against a running stack: register demo organisations, publish the NLGN scenario,
    and show the alert as the children's services team receives it."""
    from lookout.demo import run_demo

    settings = _settings("database_url", "kafka_bootstrap_servers")
    raise typer.Exit(run_demo(settings))


def _reviewer(end_user: str) -> Actor:
    return Actor(client_id="lookout-cli", end_user=end_user, purpose="identity_review")


END_USER = typer.Option("--as", help="Who is deciding (recorded in the audit)")


@identity_app.command("matches")
def identity_matches(
    status: Annotated[str, typer.Option(help="open, confirmed or rejected")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List possible matches (internal ids, kind, score and agreement levels only)."""
    from lookout.identity import repository

    settings = _settings("database_url")
    matches = _in_transaction(
        settings,
        lambda s: repository.list_possible_matches(s, status=status, after_id=None, limit=limit),
    )
    for m in matches:
        score = f"{m.score:.1f}" if m.score is not None else "-"
        typer.echo(
            f"{m.id}\t{m.kind}\t{m.person_id}\t{m.other_person_id}\t{score}\t"
            f"{orjson.dumps(m.evidence).decode()}"
        )


@identity_app.command("confirm")
def identity_confirm(
    match_id: Annotated[int, typer.Argument(metavar="MATCH_ID")],
    end_user: Annotated[str, END_USER],
) -> None:
    """Confirm two persons are one: merge them and re-evaluate their households."""
    from lookout.identity.endpoints import confirm_and_reevaluate, evaluation_config

    settings = _settings("database_url")
    config = evaluation_config(settings)
    decision, raised = _in_transaction(
        settings, lambda s: confirm_and_reevaluate(s, _reviewer(end_user), match_id, config)
    )
    typer.echo(
        f"match {match_id} confirmed: person {decision.survivor_id} "
        f"(merge {decision.merge_id}); {raised} alert(s) raised"
    )


@identity_app.command("reject")
def identity_reject(
    match_id: Annotated[int, typer.Argument(metavar="MATCH_ID")],
    end_user: Annotated[str, END_USER],
) -> None:
    """Record that two persons are different people."""
    from lookout.identity import service

    settings = _settings("database_url")
    _in_transaction(settings, lambda s: service.reject(s, _reviewer(end_user), match_id))
    typer.echo(f"match {match_id} rejected")


@identity_app.command("unlink")
def identity_unlink(
    person_id: Annotated[int, typer.Argument(metavar="PERSON_ID")],
    end_user: Annotated[str, END_USER],
    merged: Annotated[
        int | None, typer.Option(help="The merged person to restore (default: the newest)")
    ] = None,
) -> None:
    """Undo a wrong merge into PERSON_ID; alerts involving either person go to review."""
    from lookout.identity.endpoints import evaluation_config, unlink_and_rebuild

    settings = _settings("database_url")
    config = evaluation_config(settings)
    done = _in_transaction(
        settings,
        lambda s: unlink_and_rebuild(s, _reviewer(end_user), person_id, merged, config),
    )
    typer.echo(
        f"person {done.restored_person_id} restored from {done.person_id}: "
        f"{done.moved_events} event(s) moved back, "
        f"{len(done.alerts_for_review)} alert(s) marked for review"
    )


@dlq_app.command("list")
def dlq_list(
    code: Annotated[
        str | None, typer.Option("--code", help="Only this reason code, e.g. unknown_source")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Only this publisher's source URI")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    before: Annotated[
        str | None, typer.Option(help="A rejection id: list those older than it (paging)")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON lines")] = False,
) -> None:
    """Rejected events, newest first: id, when, reason code, source, type, event id and
    the detail (field paths, never values). Audited."""
    import uuid

    from lookout.ingest import rejections
    from lookout.ingest.validation import Reason

    if code is not None and code not in {r.value for r in Reason}:
        typer.echo(f"error: --code must be one of {', '.join(r.value for r in Reason)}", err=True)
        raise typer.Exit(2)
    try:
        anchor = uuid.UUID(before) if before else None
    except ValueError:
        typer.echo("error: --before must be a rejection id", err=True)
        raise typer.Exit(2) from None
    settings = _settings("database_url")
    rows = _in_transaction(
        settings,
        lambda s: rejections.list_rejections(
            s, OPERATOR, source=source, limit=limit, before=anchor, reason=code
        ),
    )
    for r in rows:
        if json:
            typer.echo(
                orjson.dumps(
                    {
                        "id": str(r.id),
                        "created_at": r.created_at.isoformat(),
                        "reason": r.reason,
                        "source": r.source,
                        "event_type": r.event_type,
                        "event_id": r.event_id,
                        "detail": r.detail,
                        "dlq_published": r.dlq_published_at is not None,
                    }
                ).decode()
            )
        else:
            typer.echo(
                f"{r.id}\t{r.created_at:%Y-%m-%d %H:%M:%S}\t{r.reason}\t{r.source or '-'}\t"
                f"{r.event_type or '-'}\t{r.event_id or '-'}\t{r.detail}"
            )
    if not json:
        typer.echo(f"{len(rows)} rejection(s)", err=True)


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[
        list[str] | None, typer.Argument(metavar="[REJECTION_ID]...", help="Rejections to replay")
    ] = None,
    code: Annotated[
        str | None, typer.Option("--code", help="Or every rejection with this reason code")
    ] = None,
    source: Annotated[str | None, typer.Option(help="... and/or from this source URI")] = None,
    by: Annotated[str, typer.Option("--by", help="Who decides (recorded in the audit)")] = "",
    reason: Annotated[str, typer.Option("--reason", help="Why, e.g. the fix made")] = "",
) -> None:
    """Republish rejected events' original bytes to the events topic after a fix (e.g. the
    agency is now registered); the workers handle them like new messages, so one still
    invalid is rejected again. Each replay is audited with who and why."""
    import uuid

    from aiokafka import AIOKafkaProducer

    from lookout import kafka
    from lookout.db import create_engine, session_factory
    from lookout.ingest import rejections

    if not by.strip() or not reason.strip():
        typer.echo("error: say who (--by) and why (--reason): replays are audited", err=True)
        raise typer.Exit(2)
    if not ids and code is None and source is None:
        typer.echo("error: name rejection ids, or select them with --code / --source", err=True)
        raise typer.Exit(2)
    try:
        chosen = [uuid.UUID(i) for i in ids or []]
    except ValueError:
        typer.echo("error: a rejection id is a UUID (see `lookout dlq list`)", err=True)
        raise typer.Exit(2) from None
    settings = _settings("database_url", "kafka_bootstrap_servers")
    actor = Actor(client_id="lookout-cli", end_user=by[:200], purpose="operations")

    async def main() -> int:
        engine = create_engine(settings.database_url, pool_size=1)
        producer = AIOKafkaProducer(**kafka.producer_config(settings.kafka_bootstrap_servers))
        await producer.start()
        try:
            sessions = session_factory(engine)
            targets = list(chosen)
            if not targets:
                async with sessions() as session, session.begin():
                    before = None
                    while page := await rejections.list_rejections(
                        session, actor, source=source, limit=500, before=before, reason=code
                    ):
                        targets += [r.id for r in page]
                        before = page[-1].id
            for rejection_id in targets:  # one transaction each: replayed means audited
                async with sessions() as session, session.begin():
                    await rejections.replay(
                        session, actor, producer, settings.events_topic, rejection_id, why=reason
                    )
                typer.echo(f"replayed {rejection_id}")
            return len(targets)
        finally:
            await producer.stop()
            await engine.dispose()

    try:
        count = asyncio.run(main())
    except LookoutError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{count} rejection(s) replayed to {settings.events_topic}")
