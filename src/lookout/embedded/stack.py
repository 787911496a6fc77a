"""The supervisor behind ``lookout run``: the whole stack, locally, in one command.

Starts what is not configured (an embedded PostgreSQL when ``database_url`` is empty, an
embedded broker when ``kafka_bootstrap_servers`` is empty), migrates, creates the
topics, writes ``<state_dir>/dev.env`` for other shells and the CLI, then runs the API,
the workers, the audit sealer (``lookout sealer``) and the webhook dispatcher as child
processes, restarting any that exit (backoff 1 s → 30 s) until SIGINT/SIGTERM, when it
stops everything in reverse order and removes ``dev.env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

import structlog

from lookout.embedded.broker import EmbeddedBroker, parent_death_signal_preexec
from lookout.embedded.postgres import EmbeddedPostgres
from lookout.kafka import ensure_topics
from lookout.settings import Settings

__all__ = [
    "DEFAULT_API_COMMAND",
    "DEFAULT_SEALER_COMMAND",
    "DEFAULT_WORKER_COMMAND",
    "EMBEDDED_DATABASE",
    "read_env_file",
    "run_stack",
]

DEFAULT_API_COMMAND: tuple[str, ...] = (sys.executable, "-m", "lookout", "api")
DEFAULT_WORKER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "lookout", "worker")
DEFAULT_SEALER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "lookout", "sealer")
DEFAULT_DISPATCHER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "lookout", "dispatcher")
EMBEDDED_DATABASE = "lookout"

DEV_ENV_NAME = "dev.env"
TOKEN_SECRET_NAME = "token_secret"  # noqa: S105 - a file name
LOCK_NAME = "stack.lock"

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STOP_GRACE_S = 20.0
_POLL_S = 0.2

EXIT_OK = 0
EXIT_STARTUP_FAILED = 1
EXIT_ALREADY_RUNNING = 2

log = structlog.get_logger(__name__)


def _default_migrate(database_url: str) -> None:
    """``lookout.migrations.upgrade(database_url)``, imported only when needed."""
    from lookout.migrations import upgrade

    upgrade(database_url)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of *path* (blank lines and ``#`` comments skipped)."""
    values: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _write_private(path: Path, text: str) -> None:
    """Write *text* to *path* atomically with mode 0600."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _token_secret(settings: Settings, state_dir: Path) -> str:
    """The configured secret, else the one kept in ``state_dir/token_secret`` (made once)."""
    configured = settings.token_secret.get_secret_value()
    if configured:
        return configured
    path = state_dir / TOKEN_SECRET_NAME
    existing = path.read_text().strip() if path.exists() else ""
    if existing:
        return existing
    secret = secrets.token_urlsafe(32)
    _write_private(path, secret + "\n")
    return secret


def _api_url(settings: Settings) -> str:
    host = settings.api_host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - we only format a URL here
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


@dataclass
class _Child:
    """One supervised child process, restarted with backoff when it exits."""

    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    restarts: int = field(default=0)

    def spawn(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - commands chosen by the caller
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # signals from the terminal reach only the supervisor
            preexec_fn=parent_death_signal_preexec(),
        )
        self.started_at = time.monotonic()
        log.info("stack.child_started", child=self.name, pid=self.process.pid)

    def signal_group(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def tick(self, now: float) -> None:
        """Notice an exit (schedule a restart) or perform a due restart."""
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                return
            ran_for = now - self.started_at
            self.failures = 1 if ran_for >= BACKOFF_MAX_S else self.failures + 1
            delay = min(BACKOFF_START_S * 2 ** (self.failures - 1), BACKOFF_MAX_S)
            log.warning(
                "stack.child_exited",
                child=self.name,
                pid=self.process.pid,
                code=code,
                ran_for_s=round(ran_for, 1),
                restart_in_s=delay,
            )
            self.signal_group(signal.SIGKILL)  # leftovers of its process group
            self.process = None
            self.restart_at = now + delay
        elif now >= self.restart_at:
            self.restarts += 1
            self.spawn()


def _stop_children(children: Sequence[_Child], grace_s: float) -> None:
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in running:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in running:
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("stack.child_killed", child=child.name, pid=child.process.pid)
            child.signal_group(signal.SIGKILL)
            child.process.wait()
    for child in children:  # reap anything left in their process groups
        child.signal_group(signal.SIGKILL)
        if child.process is not None:
            child.process.wait()
            log.info("stack.child_stopped", child=child.name, code=child.process.returncode)
        child.process = None


@contextlib.contextmanager
def _signals_set(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set *stop* (only possible in the main thread; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("stack.signal", signal=signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on *path*; yields False if another process holds it."""
    fh: IO[str] = path.open("a")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        fh.close()


def _banner(
    *,
    api_url: str,
    database_url: str,
    bootstrap: str,
    dev_env: Path,
    settings: Settings,
    workers: int,
    pg: EmbeddedPostgres | None,
    broker: EmbeddedBroker | None,
) -> str:
    worker_metrics = ", ".join(
        f"http://127.0.0.1:{settings.worker_metrics_port + i}/metrics" for i in range(workers)
    )
    db_note = f"embedded, data in {pg.data_dir}" if pg else "configured"
    kafka_note = (
        "embedded Tansu, memory only: a restart loses topics and data" if broker else "configured"
    )
    lines = [
        "",
        "Lookout is running.",
        f"  API        {api_url}   (docs {api_url}/docs)",
        f"  Metrics    {api_url}/metrics"
        + (f"; workers {worker_metrics}" if workers else "")
        + (
            f"; dispatcher http://127.0.0.1:{settings.dispatcher_metrics_port}/metrics"
            if settings.dispatcher_metrics_port
            else ""
        ),
        f"  Database   {database_url}   ({db_note})",
        f"  Kafka      {bootstrap}   ({kafka_note})",
        f"  Env file   {dev_env}   (other shells: set -a; . {dev_env}; set +a)",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def run_stack(
    settings: Settings,
    *,
    workers: int = 1,
    migrate: Callable[[str], None] | None = _default_migrate,
    api_command: Sequence[str] | None = DEFAULT_API_COMMAND,
    worker_command: Sequence[str] | None = DEFAULT_WORKER_COMMAND,
    sealer_command: Sequence[str] | None = DEFAULT_SEALER_COMMAND,
    dispatcher_command: Sequence[str] | None = DEFAULT_DISPATCHER_COMMAND,
    durable: bool = True,
    stop_event: threading.Event | None = None,
    stop_grace_s: float = STOP_GRACE_S,
) -> int:
    """Run the local stack until SIGINT/SIGTERM (or *stop_event*); return the exit code.

    ``migrate=None`` skips migrations; ``api_command=None`` / ``worker_command=None`` /
    ``sealer_command=None`` / ``dispatcher_command=None`` skip those children.
    ``durable=False`` runs an embedded
    PostgreSQL without fsync (tests only). Signals are handled only when called from the
    main thread; other callers stop it with *stop_event*. Exit codes: 0 stopped, 1 startup failed,
    2 another ``lookout run`` holds the same state folder.
    """
    stop = stop_event if stop_event is not None else threading.Event()
    state_dir = Path(settings.state_dir).absolute()
    if not state_dir.exists():
        state_dir.mkdir(parents=True)
        state_dir.chmod(0o755)  # the embedded PostgreSQL's user must be able to enter it
    with _exclusive_lock(state_dir / LOCK_NAME) as locked:
        if not locked:
            print(
                f"Another `lookout run` is using {state_dir} (see {state_dir / DEV_ENV_NAME}).",
                file=sys.stderr,
            )
            return EXIT_ALREADY_RUNNING
        with _signals_set(stop):
            return _run_locked(
                settings,
                state_dir=state_dir,
                stop=stop,
                workers=workers,
                migrate=migrate,
                api_command=api_command,
                worker_command=worker_command,
                sealer_command=sealer_command,
                dispatcher_command=dispatcher_command,
                durable=durable,
                stop_grace_s=stop_grace_s,
            )


def _run_locked(
    settings: Settings,
    *,
    state_dir: Path,
    stop: threading.Event,
    workers: int,
    migrate: Callable[[str], None] | None,
    api_command: Sequence[str] | None,
    worker_command: Sequence[str] | None,
    sealer_command: Sequence[str] | None,
    dispatcher_command: Sequence[str] | None,
    durable: bool,
    stop_grace_s: float,
) -> int:
    dev_env = state_dir / DEV_ENV_NAME
    # We hold the lock, so a dev.env left here is stale (a crashed run): the settings must
    # not take the dead servers it names for configured ones.
    stale = read_env_file(dev_env)
    database_url = settings.database_url
    bootstrap = settings.kafka_bootstrap_servers
    if stale:
        if database_url and database_url == stale.get("LOOKOUT_DATABASE_URL"):
            database_url = ""
        if bootstrap and bootstrap == stale.get("LOOKOUT_KAFKA_BOOTSTRAP_SERVERS"):
            bootstrap = ""
        dev_env.unlink(missing_ok=True)
        log.info("stack.stale_dev_env_removed", path=str(dev_env))

    pg: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    children: list[_Child] = []
    code = EXIT_OK
    try:
        try:
            if not database_url and not stop.is_set():
                t0 = time.monotonic()
                pg = EmbeddedPostgres.start(
                    state_dir / "pg",
                    durable=durable,
                    log_path=state_dir / "postgres.log",
                    takeover_stale=True,
                )
                asyncio.run(pg.ensure_database(EMBEDDED_DATABASE))
                database_url = pg.url_for(EMBEDDED_DATABASE)
                log.info("stack.postgres_ready", s=round(time.monotonic() - t0, 2))
            if not bootstrap and not stop.is_set():
                broker = EmbeddedBroker.start(state_dir / "broker.log", die_with_parent=True)
                bootstrap = broker.bootstrap_servers
            if migrate is not None and not stop.is_set():
                t0 = time.monotonic()
                migrate(database_url)
                log.info("stack.migrated", s=round(time.monotonic() - t0, 2))
            if not stop.is_set():
                partitions = settings.events_partitions
                asyncio.run(
                    ensure_topics(
                        bootstrap,
                        {settings.events_topic: partitions, settings.dlq_topic: partitions},
                    )
                )
        except Exception as exc:
            log.exception("stack.startup_failed")
            print(f"lookout run: could not start the stack: {exc}", file=sys.stderr)
            code = EXIT_STARTUP_FAILED
            return code
        if stop.is_set():
            return code

        api_url = _api_url(settings)
        token_secret = _token_secret(settings, state_dir)
        connection_env = {
            "LOOKOUT_DATABASE_URL": database_url,
            "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "LOOKOUT_API_URL": api_url,
            "LOOKOUT_TOKEN_SECRET": token_secret,
        }
        _write_private(dev_env, "".join(f"{k}={v}\n" for k, v in connection_env.items()))
        # The children find the audit signing key (made on first use) in this state dir.
        base_env = {
            **os.environ,
            **connection_env,
            "LOOKOUT_STATE_DIR": str(state_dir),
            "PYTHONUNBUFFERED": "1",
        }

        if api_command is not None:
            children.append(_Child("api", list(api_command), dict(base_env)))
        if worker_command is not None:
            for i in range(workers):
                env = {
                    **base_env,
                    "LOOKOUT_WORKER_METRICS_PORT": str(settings.worker_metrics_port + i),
                }
                children.append(_Child(f"worker-{i + 1}", list(worker_command), env))
        if sealer_command is not None:
            children.append(_Child("sealer", list(sealer_command), dict(base_env)))
        if dispatcher_command is not None:  # webhooks and escalations (one is enough)
            children.append(_Child("dispatcher", list(dispatcher_command), dict(base_env)))
        for child in children:
            child.spawn()
        print(
            _banner(
                api_url=api_url,
                database_url=database_url,
                bootstrap=bootstrap,
                dev_env=dev_env,
                settings=settings,
                workers=workers if worker_command is not None else 0,
                pg=pg,
                broker=broker,
            ),
            flush=True,
        )

        while not stop.is_set():
            now = time.monotonic()
            for child in children:
                child.tick(now)
            if broker is not None and not broker.running():
                # Memory-only: a restarted broker would be a new, empty cluster. Stop.
                log.error("stack.broker_died", log=str(broker.log_path))
                code = EXIT_STARTUP_FAILED
                break
            stop.wait(_POLL_S)
        return code
    finally:
        log.info("stack.stopping")
        _shutdown(children, broker, pg, dev_env, stop_grace_s)


def _shutdown(
    children: Sequence[_Child],
    broker: EmbeddedBroker | None,
    pg: EmbeddedPostgres | None,
    dev_env: Path,
    grace_s: float,
) -> None:
    steps: list[tuple[str, Callable[[], None]]] = [
        ("children", lambda: _stop_children(children, grace_s)),
    ]
    if broker is not None:
        steps.append(("broker", broker.stop))
    if pg is not None:
        steps.append(("postgres", pg.stop))
    steps.append(("dev.env", lambda: dev_env.unlink(missing_ok=True)))
    for name, step in steps:
        try:
            step()
        except Exception:
            log.exception("stack.stop_step_failed", step=name)
    log.info("stack.stopped")
