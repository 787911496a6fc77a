"""The newcomer's path: ``lookout run`` (what ``make run`` starts) on embedded defaults,
then ``lookout demo`` against it, then Ctrl-C stops everything cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from lookout.embedded.postgres import free_port
from lookout.embedded.stack import read_env_file

pytestmark = pytest.mark.slow


def test_run_then_demo_then_stop() -> None:
    state = Path(tempfile.mkdtemp(prefix="lookout-run-"))
    state.chmod(0o755)
    env = {
        **os.environ,
        "LOOKOUT_STATE_DIR": str(state),
        "LOOKOUT_DATABASE_URL": "",
        "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS": "",
        "LOOKOUT_API_PORT": str(free_port()),
        "LOOKOUT_WORKER_METRICS_PORT": str(free_port()),
        "LOOKOUT_DISPATCHER_METRICS_PORT": str(free_port()),
        "LOOKOUT_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "LOOKOUT_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
    }
    stack = subprocess.Popen(
        [sys.executable, "-m", "lookout", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        dev_env = state / "dev.env"
        deadline = time.monotonic() + 60
        ready = False
        while time.monotonic() < deadline and not ready:
            assert stack.poll() is None, stack.stdout.read() if stack.stdout else ""
            if dev_env.exists():
                values = read_env_file(dev_env)
                with contextlib.suppress(httpx.HTTPError):
                    ready = (
                        httpx.get(values["LOOKOUT_API_URL"] + "/readyz", timeout=2).status_code
                        == 200
                    )
            time.sleep(0.3)
        assert ready, "the stack did not become ready within 60 s"
        assert {
            "LOOKOUT_DATABASE_URL",
            "LOOKOUT_KAFKA_BOOTSTRAP_SERVERS",
            "LOOKOUT_API_URL",
        } <= set(values)

        demo = subprocess.run(
            [sys.executable, "-m", "lookout", "demo"],
            env={**env, **values},
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert '"rule_id": "adult-substance-misuse-ed"' in demo.stdout
        assert "curl -s" in demo.stdout

        # The supervised sealer chains the demo's audit records and signs checkpoints.
        sealed_through, deadline = 0, time.monotonic() + 30
        while sealed_through == 0 and time.monotonic() < deadline:
            verified = subprocess.run(
                [sys.executable, "-m", "lookout", "audit", "verify", "--json"],
                env={**env, **values},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert verified.returncode == 0, verified.stdout + verified.stderr
            sealed_through = json.loads(verified.stdout)["sealed_through"]
            time.sleep(0.5)
        assert sealed_through > 0

        stack.send_signal(signal.SIGINT)
        assert stack.wait(timeout=60) == 0
        assert not dev_env.exists()
        leftovers = subprocess.run(
            ["pgrep", "-f", str(state)], capture_output=True, text=True, check=False
        )
        assert leftovers.stdout.strip() == ""
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait()
        shutil.rmtree(state, ignore_errors=True)
