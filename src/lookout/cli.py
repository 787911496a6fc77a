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


@app.command()
def demo() -> None:
    """Against a running stack: register demo organisations, publish the NLGN scenario,
    and show the alert as the children's services team receives it."""
    from lookout.demo import run_demo

    settings = _settings("database_url", "kafka_bootstrap_servers")
    raise typer.Exit(run_demo(settings))
