"""The ``lookout`` command: run the stack, operate it, publish events.

Connection settings come from ``LOOKOUT_*`` variables, or else from ``.lookout/dev.env``
written by a running ``lookout run``.
"""

from __future__ import annotations

import asyncio
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
app.add_typer(orgs_app, name="orgs")
app.add_typer(clients_app, name="clients")
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
def run(workers: Annotated[int, typer.Option(min=1, max=16, help="Worker processes")] = 1) -> None:
    """Start Lookout locally: embedded PostgreSQL and broker unless configured, migrations,
    topics, the API and the workers, supervised until Ctrl-C."""
    from lookout.embedded.stack import run_stack

    configure_logging(json=False)
    raise typer.Exit(run_stack(get_settings(), workers=workers))


@app.command()
def api() -> None:
    """Serve the HTTP API (uvicorn)."""
    import uvicorn

    from lookout.api.app import create_app

    settings = _settings("database_url", "kafka_bootstrap_servers")
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        create_app(settings),
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
